"""Pydantic models: the single source of truth for task, recipe and eval-suite files.

Every model forbids unknown keys so that a misspelt key is an error, not a silently ignored setting.
Paths stay as written here; the loader resolves them against the YAML file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    PrivateAttr,
    field_serializer,
    model_validator,
)


class Strict(BaseModel):
    # inf and nan are never a meaningful weight, rate or temperature (`weight: .inf` passed and broke training)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TemplatePath:
    """Field marker: a template file the renderer looks up (YAML folder, then templates/); the loader resolves it
    against the YAML's folder only when the file exists there."""

    def __repr__(self) -> str:
        return "TemplatePath()"


class OutputPath:
    """Field marker: a folder the run writes to; stays relative to the working directory, like every CLI's output."""

    def __repr__(self) -> str:
        return "OutputPath()"


# --------------------------------------------------------------------------------------------- sources
class Source(Strict):
    """Where rows come from: exactly one of `hf`, `path` or `generator`."""

    hf: str | None = Field(None, description="Hugging Face dataset id, e.g. openai/gsm8k")
    config: str | None = Field(None, description="dataset configuration name (hf only)")
    split: str = Field("train", description="split to read (hf, and local files loaded through datasets)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="data_files passed to datasets.load_dataset (hf only)"
    )
    revision: str | None = Field(None, description="dataset revision (hf only)")
    path: Path | None = Field(None, description="local jsonl/json/csv/parquet file (optionally .gz), relative to the YAML")
    format: Literal["jsonl", "json", "csv", "parquet"] | None = Field(
        None, description="file format; inferred from the suffix when omitted"
    )
    generator: str | None = Field(None, description="built-in generator name (see `urpo-kit tasks --generators`)")
    n: int = Field(1000, ge=1, description="rows a generator yields")
    params: dict[str, Any] = Field(default_factory=dict, description="extra generator arguments")
    seed: int = Field(0, description="seed for the generator and for `shuffle`")
    shuffle: bool = Field(False, description="shuffle rows with `seed` before `limit` is applied")
    skip: int = Field(0, ge=0, description="drop the first rows (after shuffling): carve a held-out split")
    limit: int | None = Field(None, ge=1, description="keep at most this many rows (after shuffle and skip)")
    max_error_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="malformed rows are skipped and counted; the load fails above this share"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> "Source":
        given = [k for k in ("hf", "path", "generator") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of `hf`, `path` or `generator`" + (f" (got {', '.join(given)})" if given else "")
            )
        if self.hf is None and (self.config or self.data_files or self.revision):
            raise ValueError("`config`, `data_files` and `revision` apply to `hf` sources only")
        return self


# --------------------------------------------------------------------------------------------- prompts
class Prompt(Strict):
    """A chat prompt: optional system message plus a user message, inline Jinja2 or a template file."""

    system: str | None = Field(None, description="system message (Jinja2)")
    prompt: str | None = Field(None, description="user message, inline Jinja2")
    template: Annotated[Path | None, TemplatePath()] = Field(
        None, description="user message from a .j2 file (templates/ folder or the YAML's)"
    )

    @model_validator(mode="after")
    def _one_body(self) -> "Prompt":
        if (self.prompt is None) == (self.template is None):
            raise ValueError("give exactly one of `prompt` (inline) or `template` (file)")
        return self


VerdictKind = Literal["sample", "likelihood"]
VERDICTS: tuple[str, ...] = get_args(VerdictKind)
Mode = Literal["listwise", "pairwise", "pointwise"]
MODES: tuple[str, ...] = get_args(Mode)
Debias = Literal["none", "shuffle", "both_orders"]
DEBIAS: tuple[str, ...] = get_args(Debias)
LabelStyle = Literal["numbers", "letters"]


@dataclass(frozen=True)
class SamplingParams:
    """Resolved sampling, every value set (what a backend generates with); temperature 0 means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 64


class Sampling(Strict):
    """The one sampling spec: unset fields fall back to the layer below (a role's defaults, then the recipe's or
    suite's role, then a task's or benchmark's own), merged in one place: `Sampling.resolve`."""

    temperature: float | None = Field(None, ge=0.0, description="sampling temperature (0: greedy)")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int | None = Field(None, ge=1, description="generated tokens at most")

    @staticmethod
    def resolve(base: SamplingParams, *layers: "Sampling | None") -> SamplingParams:
        """`base` with the set fields of each layer applied in turn (later layers win)."""
        values = dataclasses.asdict(base)
        for layer in layers:
            if layer is not None:
                values.update({k: v for k in values if (v := getattr(layer, k)) is not None})
        return SamplingParams(**values)


class RefereeSpec(Strict):
    """The one referee spec: how candidates are shown to the referee (a template that receives `prompt`,
    `candidates`, `labels`, `n`, `scale`) and how its verdict is reached. Used by preference tasks (`referee`),
    open-ended tasks (`self_referee`), eval suites and `urpo-kit judge`/`serve`."""

    mode: Mode = Field("listwise", description="listwise: rank all candidates in one judgment; pairwise: every "
                                               "pair; pointwise: score each candidate on `scale`")
    system: str | None = Field(None, description="system message (Jinja2)")
    template: Annotated[Path | None, TemplatePath()] = Field(
        None, description="referee template file; default by mode: referee/rank.j2 (listwise), pair.j2, score.j2"
    )
    labels: LabelStyle = Field("numbers", description="candidate labels: [1] [2] ... or [A] [B] ...")
    shuffle: bool = Field(True, description="show candidates in a seeded shuffled order (the permutation is kept)")
    prefill: str | None = Field(
        None, description="start of the referee's reply, which the model continues and the parser reads with it, "
                          "e.g. 'Score:' or 'Ranking: [': small models that ignore the format line follow it "
                          "(a verdict-first reply); `verdict: likelihood` defaults it to the mode's verdict start"
    )
    verdict: VerdictKind = Field(
        "sample", description="sample: generate the judgment text and parse it; likelihood: read the verdict from "
                              "the next-token probabilities of the labels (or scores) right after the prefill, in "
                              "one forward pass (no generation, no parse failure). A trained preference task with "
                              "likelihood samples its judgments from those probabilities: a referee step draws one "
                              "token from the labels alone (the rest of the vocabulary suppressed; needs "
                              "grpo.steps_by_role), which names the candidate ranked first")
    scale: tuple[int, int] = Field(
        (1, 10), description="pointwise score range [low, high], given to the template as `scale`; "
                             "`verdict: likelihood` needs every score to be one token (e.g. [1, 9] where 10 is two)")
    debias: Debias = Field("shuffle", description="presentation order per judgment: as given (none), a seeded "
                                                  "shuffle, or both_orders (an order and its reverse, averaged)")
    samples: int = Field(1, ge=1, description="judgments per comparison, averaged")
    sampling: Sampling = Field(default_factory=Sampling, description="overrides of the referee role's sampling")

    @model_validator(mode="after")
    def _scale_order(self) -> "RefereeSpec":
        if self.scale[0] >= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with low < high, got {list(self.scale)}")
        return self


# --------------------------------------------------------------------------------------------- rewards
class LengthPenalty(Strict):
    """Linear penalty for completions longer than `max_tokens`, reaching `-weight` at `2 * max_tokens`."""

    max_tokens: int = Field(..., ge=1, description="completion length (tokens) above which the penalty starts")
    weight: float = Field(0.1, ge=0.0, description="penalty at twice `max_tokens` (and beyond)")


class RewardSpec(Strict):
    """Weighted sum of reward components: correctness (verifier or ranking score), format, length."""

    correct: float = Field(1.0, description="weight of the correctness term (1/0 or a ranking score in [0, 1])")
    format: float = Field(0.0, description="weight of the format term (answer extracted / ranking parsed)")
    length: LengthPenalty | None = Field(None, description="optional length penalty")


class Answer(Strict):
    """How the gold answer is rendered, how the model's answer is extracted, and how the two are compared."""

    gold: str = Field(..., description="Jinja2 template rendering the gold answer from the row")
    extract: str | list[str] = Field(
        "boxed", description="how the answer is read from a completion: boxed | last_number | full | tag:NAME | "
                             "regex:PATTERN, or a list of them tried in turn (`[boxed, last_number]`)")
    verifier: str = Field("exact", description="exact | numeric | math | choice | regex | pkg.mod:fn (needs allow-code)")
    verifier_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the verifier")


# --------------------------------------------------------------------------------------------- tasks
class TaskBase(Strict):
    _origin: Path | None = PrivateAttr(None)  # the YAML file this task was loaded from (set by the loader)
    _positions: Any = PrivateAttr(None)  # loader.PositionMap: where each field was written, for located errors

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", description="task name (metrics key)")
    description: str | None = Field(None, description="one line for `urpo-kit tasks` and the model card")
    source: Source = Field(..., description="where the rows come from")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="template variables as Jinja2 expressions over the raw row (a column name is one); raw columns stay visible",
    )
    reward: RewardSpec = Field(default_factory=RewardSpec, description="reward weights")


# --------------------------------------------------------------------------------------------- recipe
class Lora(Strict):
    """LoRA adapters (peft) instead of full fine-tuning; merged into `final/` at the end."""

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0.0, le=1.0, description="dropout on the adapter input")
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="module names to adapt")


class ModelSpec(Strict):
    """The model that plays both roles (or a suite's model and win-rate judge)."""

    name: str = Field("bundled:smollm2-135m-instruct", description="hub id, local folder, or bundled:NAME")
    revision: str | None = Field(None, description="hub revision (hub ids only)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype; auto: bfloat16 on a GPU that supports it, else float32")
    lora: Lora | None = Field(None, description="train LoRA adapters (default: full fine-tuning)")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    trust_remote_code: bool = Field(False, description="allow the checkpoint's own modelling code")


class TaskRef(Strict):
    """One task of a recipe's mix."""

    _overrides_at: Any = PrivateAttr(None)  # where each override was written (set by the loader)

    task: Path = Field(..., description="task YAML, relative to the recipe")
    weight: float = Field(1.0, gt=0.0, description="share of the mixed stream (weights are normalised)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="key.path: value overrides for this task")


class Grpo(Strict):
    """GRPO settings, passed to TRL's GRPOConfig."""

    group_size: int = Field(4, ge=2, description="G rollouts per prompt")
    steps: int = Field(30, ge=1, description="optimizer steps; the stream holds steps * prompts_per_step episodes")
    prompts_per_step: int = Field(8, ge=1, description="prompts per optimizer step (each gets group_size answers)")
    steps_by_role: bool = Field(
        False, description="each optimizer step holds one role's prompts (steps shared out by the roles' task "
        "weights), and the referee's steps generate at most roles.referee.max_new_tokens: a verdict-first judgment "
        "is a few tokens, not the player's answer length, so the loss is the verdict, not what the model rambles "
        "after it, and a referee step costs a fraction of a player step. The loss reads log-probabilities at roles.player's "
        "temperature on every step (TRL has one); text steps also sample at it, while referee steps that draw one "
        "label (preference tasks with referee.verdict: likelihood) draw at roles.referee's, an exploration "
        "temperature. generation.backend hf only")
    referee_draws: Literal["systematic", "independent"] = Field(
        "systematic", description="with steps_by_role, how a referee step that draws one label (a preference task "
        "with referee.verdict: likelihood) draws the group_size labels of a prompt: systematic, from one uniform "
        "spread over the group (each draw still follows the label probabilities; a label of probability p is drawn "
        "floor or ceil of G p times, so the luck of which groups are mixed no longer moves the label bias), or "
        "independent, as generation samples")
    optimizer_state: Literal["shared", "per_role"] = Field(
        "shared", description="with steps_by_role, whether both roles share the optimizer state (TRL's one "
        "optimizer) or each role keeps its own (Adam's moments and step count, swapped at each role change and "
        "saved in checkpoints; not under DeepSpeed or FSDP). Shared, a referee step's gradient carries into the next "
        "player steps through the momentum and scales their updates; per role, each step's update is its own role's "
        "moving average at the full learning rate. In our quickstart runs per role did not help (README)")
    lr: float = Field(1e-5, gt=0.0, description="learning rate (constant after warmup_steps)")
    beta: float = Field(0.0, ge=0.0, description="KL coefficient (0: no reference model)")
    epsilon: float = Field(0.2, gt=0.0, description="PPO-style clipping range of the probability ratio")
    num_iterations: int = Field(1, ge=1, description="optimizer passes over each generated batch")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantages divided by the reward std of the group, the batch, or not at all")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field("dapo", description="TRL's loss normalisation")
    max_grad_norm: float = Field(1.0, description="gradient clipping norm")
    warmup_steps: int = Field(0, description="linear learning-rate warmup steps")
    gradient_accumulation_steps: int = Field(1, description="micro-batches per optimizer step")
    per_device_batch_size: int | None = Field(None, description="completions per device per micro-batch (default: all)")
    logging_steps: int = Field(1, description="log metrics every N steps")
    save_steps: int = Field(10, ge=1, description="checkpoint every N steps")
    save_total_limit: int | None = Field(3, description="checkpoints kept (older ones are deleted); null: all")


class Roles(Strict):
    """Sampling per role for training: `player` samples every trained completion (TRL samples a step with one
    setting), `referee` the self-referee's judgments. Unset fields take the role's default."""

    DEFAULTS: ClassVar[dict[str, SamplingParams]] = {"player": SamplingParams(1.0, 1.0, 128),
                                                     "referee": SamplingParams(0.7, 1.0, 64)}

    player: Sampling = Field(default_factory=Sampling, description="default: temperature 1.0, top_p 1.0, 128 tokens")
    referee: Sampling = Field(default_factory=Sampling, description="default: temperature 0.7, top_p 1.0, 64 tokens")

    def params(self, role: Literal["player", "referee"], override: Sampling | None = None) -> SamplingParams:
        """The role's resolved sampling: its defaults, then this role's settings, then `override` (a task's)."""
        return Sampling.resolve(self.DEFAULTS[role], getattr(self, role), override)

    @field_serializer("player", "referee")
    def _resolved(self, _value: Sampling, info: FieldSerializationInfo) -> dict[str, Any]:
        """Written out resolved (a run's recipe.yaml shows the sampling it used, and resume compares values)."""
        return dataclasses.asdict(self.params(info.field_name))  # type: ignore[arg-type]


class EvalRoles(Roles):
    """Sampling per role for evaluation: greedy by default, so that two runs of one checkpoint agree."""

    DEFAULTS: ClassVar[dict[str, SamplingParams]] = {"player": SamplingParams(0.0, 1.0, 256),
                                                     "referee": SamplingParams(0.0, 1.0, 64)}

    player: Sampling = Field(default_factory=Sampling, description="default: greedy, 256 tokens")
    referee: Sampling = Field(default_factory=Sampling, description="default: greedy, 64 tokens")


class Generation(Strict):
    """Where rollouts are generated."""

    backend: Literal["hf", "vllm_server", "vllm_colocate"] = Field(
        "hf", description="hf: transformers generate; vllm_server: a `trl vllm-serve` server; vllm_colocate: a vLLM "
                          "engine in each training process")
    vllm_server_url: str | None = Field(None, description="server URL for vllm_server (default: TRL's)")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0, description="GPU memory share of a colocated "
                                                                                 "engine")
    vllm_tensor_parallel_size: int = Field(1, description="tensor parallelism of a colocated engine")


class RecipeEval(Strict):
    """Held-out evaluation during training."""

    every: int = Field(10, ge=0, description="held-out evaluation every N steps (0: never); also at step 0 and the end")
    suites: list[Path] = Field(default_factory=list, description="eval suite YAMLs, relative to the recipe")


class Recipe(Strict):
    """A recipe file (see recipes/): model, task mix, GRPO settings, role sampling, evaluation."""

    _origin: Path | None = PrivateAttr(None)  # the YAML file this recipe was loaded from (set by the loader)
    _positions: Any = PrivateAttr(None)  # loader.PositionMap

    model: ModelSpec = Field(default_factory=ModelSpec, description="the model trained as player and referee")
    tasks: list[TaskRef] = Field(..., min_length=1, description="the task mix")
    grpo: Grpo = Field(default_factory=Grpo, description="GRPO settings")
    roles: Roles = Field(default_factory=Roles, description="sampling per role")
    generation: Generation = Field(default_factory=Generation, description="generation backend")
    eval: RecipeEval = Field(default_factory=RecipeEval, description="held-out evaluation")
    seed: int = Field(0, description="seed of the stream's phases, later passes' shuffles and training")
    output_dir: Annotated[Path, OutputPath()] = Field(Path("runs/default"), description="the run folder (relative "
                                                                                        "to the working folder)")
    allow_code: bool = Field(False, description="allow dotted-path `pkg.mod:fn` verifiers and generators")
    accelerate_config: Path | None = Field(None, description="accelerate config used by the launch command (documentation)")

    @property
    def stream_length(self) -> int:
        """Stopping rule: the stream holds exactly steps x prompts_per_step episodes; tasks cycle when exhausted."""
        return self.grpo.steps * self.grpo.prompts_per_step
