"""Assemble TRL's GRPOTrainer from a recipe, and run it: `urpo-kit train`.

What we add to TRL, through its public API only: the compiled mixed stream as the train dataset (order kept), one
reward function per task kind, the self-referee bound to the trainer's own model, the batch layout, our callbacks
(run log, held-out evaluation, plots, progress) and the run folder (resolved recipe, versions, resume checks).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urpo_kit.compiler import MixedStream, PreparedTask, prepare_recipe_tasks
from urpo_kit.config import locate
from urpo_kit.config.files import writable_folder
from urpo_kit.config.refs import located
from urpo_kit.config.schema import Recipe
from urpo_kit.errors import ConfigError, FieldError, UrpoError
from urpo_kit.kinds import Episode, OpenEnded, Preference
from urpo_kit.models import fast_generate, load_tokenizer
from urpo_kit.referee.backends import Messages, chat_prompt
from urpo_kit.sources import describe_skipped
from urpo_kit.train.layout import BatchLayout, batch_layout
from urpo_kit.train.card import write_model_card
from urpo_kit.train.label_draws import share_prompt_passes
from urpo_kit.train.metrics import RunLog, read_heldout
from urpo_kit.train.optim import role_state_optimizer
from urpo_kit.train.resume import check_resume, checkpoint_step, fingerprint, set_aside_incomplete, write_run_info
from urpo_kit.train.rewards import StepObserver, reward_functions
from urpo_kit.train.self_referee import SelfReferee, generation_context, trainer_backend

log = logging.getLogger(__name__)
FINAL_DIR = "final"  # full weights at the end of training, with the model card

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer


def num_processes() -> int:
    """Processes of this launch, read from the environment as accelerate does (torchrun, or MPI for multi-CPU).

    Read before the trainer exists because the batch layout depends on it; `build_run` checks it against the
    trainer's accelerator afterwards.
    """
    from accelerate.utils import get_int_from_env

    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


def is_main_process() -> bool:
    from accelerate.utils import get_int_from_env

    return get_int_from_env(["RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"], 0) == 0


def needs_whole_groups(tasks: Sequence[PreparedTask]) -> bool:
    """Whether any task's scorer compares the G answers of a prompt (a listwise or pairwise self-referee)."""
    return any(t.task.whole_groups for t in tasks)


def prompt_text(tokenizer: Any, messages: Messages) -> str:
    """A prompt as TRL is given it: text with the chat template applied here. TRL 1.16 applies the template to
    conversational prompts with `add_generation_prompt=True`, which closes a final assistant message (a referee's
    prefill such as `Ranking: [`) and opens a new turn, so the model never continued the verdict line it was given.
    TRL tokenizes a text prompt with special tokens, so a BOS the template writes is left to the tokenizer."""
    text = chat_prompt(tokenizer, messages)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def trl_record(episode: Episode[Any], tokenizer: Any) -> dict[str, Any]:
    """The dataset row TRL trains on: the episode's record with its messages as `messages` (the reward functions
    rebuild the episode from them) and the prompt as text (`prompt_text`)."""
    record = episode.to_record()
    record["messages"] = record["prompt"]
    record["prompt"] = prompt_text(tokenizer, record["messages"])
    return record


def train_dataset(stream: MixedStream, tokenizer: Any, *,
                  progress: bool = True) -> tuple[Dataset, list[dict[str, Any]]]:
    """The stream as a datasets.Dataset in stream order (row i = position i), and its records."""
    from datasets import Dataset
    from rich.progress import track

    episodes = stream.episodes()
    if progress:
        episodes = track(episodes, total=stream.length, description="compiling the stream")
    records = [trl_record(ep, tokenizer) for ep in episodes]
    return Dataset.from_list(records), records


def step_generation(recipe: Recipe, tasks: Sequence[PreparedTask], records: Sequence[dict[str, Any]],
                    tokenizer: Any) -> dict[str, dict[str, Any]]:
    """Per role, the generation settings a step of that role runs with (`grpo.steps_by_role`, RoleStepCallback):
    the role's length; and when the preference tasks sample labels (`referee.verdict: likelihood`), a referee step
    draws one token from the labels alone, every other token suppressed. Its samples then follow the model's
    label probabilities renormalised over the labels, and each is a whole verdict, so GRPO's signal is the choice.

    Such a step draws at `roles.referee.temperature` while the loss reads log-probabilities at the player's (TRL
    has one): above it, the draws explore. For two labels the expected update still raises the gold label's
    log-odds whatever the draw distribution, and a flatter one keeps both labels drawn when the model leans
    hard on one position, where on-policy draws of a group agree and leave GRPO nothing (zero variance)."""
    player = recipe.roles.params("player").temperature  # text steps sample at it, as the loss reads it
    settings: dict[str, dict[str, Any]] = {
        role: {"max_new_tokens": recipe.roles.params(role).max_new_tokens, "temperature": player,
               "suppress_tokens": None} for role in ("player", "referee")}
    # compiler.check_tasks has made sure that, when a task draws labels, every referee step holds only such tasks
    by_name = {t.name: t.task for t in tasks if isinstance(t.task, Preference) and t.task.samples_labels}
    if not by_name:
        return settings
    allowed: set[int] = set()
    checked: set[tuple[str, tuple[str, ...]]] = set()
    for record in records:
        task = by_name.get(record["task"])
        if task is None:
            continue
        labels = tuple(json.loads(record["episode"])["payload"]["labels"])
        if (task.name, labels) in checked:
            continue
        checked.add((task.name, labels))
        try:
            allowed.update(task.label_token_ids(tokenizer, record["prompt"], labels))
        except FieldError as e:
            raise ConfigError(locate(task.spec, e)) from None
    settings["referee"] = {"max_new_tokens": 1, "temperature": recipe.roles.params("referee").temperature,
                           "suppress_tokens": [i for i in range(len(tokenizer)) if i not in allowed]}
    return settings


def grpo_config(recipe: Recipe, layout: BatchLayout, **extra: Any) -> GRPOConfig:
    """GRPOConfig for the recipe. `extra` overrides any field (tests and the benchmark use it).

    TRL samples all completions of a step in one call with one sampling setting, so `roles.player` applies to every
    trained completion, the preference tasks' judgments included (with `grpo.steps_by_role`, a referee step's length
    is `roles.referee.max_new_tokens`: RoleStepCallback); `roles.referee` is what the self-referee uses.
    The learning rate is constant after `grpo.warmup_steps` (the recipe has no schedule; GRPO runs are short).
    """
    import torch
    from trl import GRPOConfig

    from urpo_kit.models import model_init_kwargs

    g, player, gen = recipe.grpo, recipe.roles.params("player"), recipe.generation
    cuda = torch.cuda.is_available()
    kwargs: dict[str, Any] = dict(
        output_dir=str(recipe.output_dir),
        seed=recipe.seed,
        learning_rate=g.lr,
        beta=g.beta,
        epsilon=g.epsilon,
        num_iterations=g.num_iterations,
        scale_rewards=g.scale_rewards,
        loss_type=g.loss_type,
        max_grad_norm=g.max_grad_norm,
        warmup_steps=g.warmup_steps,
        lr_scheduler_type="constant_with_warmup",
        logging_steps=g.logging_steps,
        save_strategy="steps",
        save_steps=g.save_steps,
        save_total_limit=g.save_total_limit,
        shuffle_dataset=False,  # the stream is already mixed and seeded; its order is the resume contract
        max_completion_length=player.max_new_tokens,
        temperature=player.temperature,
        top_p=player.top_p,
        gradient_checkpointing=recipe.model.gradient_checkpointing,
        model_init_kwargs=model_init_kwargs(recipe.model),
        trust_remote_code=recipe.model.trust_remote_code,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),  # TRL's default (bf16=True) fails on a CPU-only machine
        report_to="none",  # TensorBoard is written by our run log, with our metrics in it
        disable_tqdm=True,  # replaced by one line per step (StepLineCallback)
        use_vllm=gen.backend != "hf",
        **layout.grpo_config_kwargs(),
    )
    if gen.backend != "hf":
        kwargs.update(vllm_mode="server" if gen.backend == "vllm_server" else "colocate",
                      vllm_gpu_memory_utilization=gen.vllm_gpu_memory_utilization,
                      vllm_tensor_parallel_size=gen.vllm_tensor_parallel_size)
        if gen.vllm_server_url:
            kwargs["vllm_server_base_url"] = gen.vllm_server_url
    kwargs.update(extra)
    return GRPOConfig(**kwargs)


def per_role_optimizer(recipe: Recipe) -> bool:
    """Whether the run keeps one optimizer state per role (RoleStepCallback selects it before each step)."""
    return recipe.grpo.steps_by_role and recipe.grpo.optimizer_state == "per_role"


def make_trainer(recipe: Recipe, layout: BatchLayout, dataset: Dataset, rewards: Sequence[Callable[..., Any]],
                 referee: SelfReferee | None, callbacks: Sequence[TrainerCallback] = (), tokenizer: Any = None,
                 **config_overrides: Any) -> GRPOTrainer:
    """GRPOTrainer for the recipe's model on `dataset` (rows from `trl_record`, with `tokenizer`: the recipe's by
    default), with the self-referee (if any) bound to its model."""
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    from urpo_kit.models import peft_config, resolve_model_path

    trainer = GRPOTrainer(
        model=resolve_model_path(recipe.model.name, recipe.model.revision),
        reward_funcs=list(rewards),
        args=grpo_config(recipe, layout, **config_overrides),
        train_dataset=dataset,
        processing_class=tokenizer if tokenizer is not None else load_tokenizer(recipe.model),
        peft_config=peft_config(recipe.model),
        callbacks=list(callbacks),
    )
    if trainer.accelerator.num_processes != layout.num_processes:
        raise UrpoError(f"the launcher reports {layout.num_processes} processes but accelerate runs "
                        f"{trainer.accelerator.num_processes}; launch with `accelerate launch` or torchrun")
    trainer.remove_callback(PrinterCallback)  # added by disable_tqdm; the run log and step lines replace it
    if per_role_optimizer(recipe):
        if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            raise located(recipe, "grpo.optimizer_state", "one optimizer state per role is not supported under "
                          "DeepSpeed or FSDP (they build and checkpoint the optimizer themselves): set "
                          "grpo.optimizer_state: shared")
        trainer.optimizer_cls_and_kwargs = role_state_optimizer(trainer.args, trainer.model)  # contract-tested
    if recipe.generation.backend == "hf":
        fast_generate(trainer.model)  # TRL generates with `trainer.model.generate` (contract test)
    share_prompt_passes(trainer)  # one-token completions (a referee step's labels): one pass per prompt
    if referee is not None:
        referee.backend.bind(trainer_backend(trainer, recipe))
        referee.check(recipe.grpo.group_size)
    return trainer


@dataclass
class UrpoRun:
    """Everything a training run is made of; `trainer.train(resume_from_checkpoint=...)` runs it."""

    recipe: Recipe
    run_dir: Path
    tasks: list[PreparedTask]
    stream: MixedStream
    layout: BatchLayout
    trainer: GRPOTrainer
    referee: SelfReferee | None
    run_log: RunLog
    resume_from: Path | None


def build_run(recipe: Recipe, *, resume: bool = False, callbacks: Sequence[TrainerCallback] = (),
              progress: bool = True, run_suite: Callable[..., dict[str, float]] | None = None,
              **config_overrides: Any) -> UrpoRun:
    """Prepare tasks and stream, check the layout and the run folder, and build the trainer (nothing runs yet)."""
    from accelerate.utils import gather_object

    from urpo_kit.train.callbacks import PlotsCallback, RoleStepCallback, RunLogCallback, StepLineCallback

    run_dir = Path(recipe.output_dir)
    writable_folder(run_dir)  # a file, or a folder we may not write to, is an error now rather than a traceback later
    tasks = prepare_recipe_tasks(recipe)
    for task in tasks:
        if task.rows.skipped:
            log.warning("task %s: %d of %d rows skipped: %s", task.name, len(task.rows.skipped),
                        task.rows.total_seen, describe_skipped(task.rows.skipped))
    stream = MixedStream.from_recipe(recipe, tasks)
    layout = batch_layout(recipe.grpo, num_processes(), whole_groups=needs_whole_groups(tasks))
    suites = _heldout_suites(recipe, run_suite)
    tokenizer = load_tokenizer(recipe.model)
    dataset, records = train_dataset(stream, tokenizer, progress=progress)
    stream_fingerprint = fingerprint(records)
    resume_from = check_resume(run_dir, recipe, stream_fingerprint, resume)

    main = is_main_process()
    if main and resume:
        for moved in set_aside_incomplete(run_dir):
            log.warning("%s was cut short (no trainer_state.json); set aside as %s", moved.name, moved)
    if main and resume_from is None:
        write_run_info(run_dir, recipe, {"length": stream.length, "fingerprint": stream_fingerprint,
                                         "counts": stream.realised_counts(), "epochs": stream.epochs(),
                                         "layout": layout.grpo_config_kwargs(),
                                         **({"step_roles": stream.role_steps} if stream.step_size else {})})
    run_log = RunLog(run_dir, resume_step=checkpoint_step(resume_from) if resume_from else None, enabled=main)

    open_ended = [t.task for t in tasks if isinstance(t.task, OpenEnded)]
    referee = SelfReferee(open_ended, recipe) if open_ended else None
    observer = StepObserver()
    rewards = reward_functions([t.task for t in tasks], observer=observer)

    print_line = functools.partial(print, flush=True) if progress else None
    heldout = _heldout_callback(recipe, suites, run_dir, run_log, run_suite, resume_from, print_line)
    # the step line comes before the held-out evaluation, so that its seconds per step leave the evaluation out
    role_steps = RoleStepCallback(stream.step_role, step_generation(recipe, tasks, records, tokenizer),
                                  per_role_optimizer(recipe), recipe.grpo.referee_draws == "systematic") \
        if recipe.grpo.steps_by_role else None
    ours: list[TrainerCallback | None] = [RunLogCallback(run_log, observer, gather_object),
                                          StepLineCallback(print_line) if print_line else None,
                                          heldout, PlotsCallback(run_dir), role_steps, *callbacks]

    trainer = make_trainer(recipe, layout, dataset, rewards, referee, [c for c in ours if c is not None],
                           tokenizer, **config_overrides)
    if role_steps is not None:
        role_steps.bind(trainer)
    if heldout is not None:
        heldout.generation_model = generation_context(trainer)
        heldout.tokenizer = trainer.processing_class

    def create_model_card(*args: Any, **kwargs: Any) -> None:
        """TRL writes its generic card into the run folder at every checkpoint; ours takes its place."""
        if trainer.is_world_process_zero():
            write_model_card(recipe, tasks, stream, run_dir, run_dir / FINAL_DIR)

    trainer.create_model_card = create_model_card
    return UrpoRun(recipe, run_dir, tasks, stream, layout, trainer, referee, run_log, resume_from)


def _heldout_suites(recipe: Recipe, run_suite: Callable[..., dict[str, float]] | None) -> list[Any]:
    """The recipe's held-out suites, loaded and checked (a suite's mistakes stop the run before the tokenizer or the
    model loads, not at step 0's evaluation); none when the recipe names none (or `eval.every` is 0)."""
    from urpo_kit.config.suite import load_suite
    from urpo_kit.eval.runner import check_suite

    if not recipe.eval.suites or recipe.eval.every == 0:
        return []
    if run_suite is None:  # passed in by the caller: training sits below evaluation and does not import it
        raise UrpoError("held-out evaluation needs an evaluator: pass run_suite (urpo_kit.eval.run_suite, as "
                        "`urpo-kit train` does), or set eval.every=0 to train without it")
    suites = [load_suite(path) for path in recipe.eval.suites]
    for suite in suites:
        check_suite(suite)
    return suites


def _heldout_callback(recipe: Recipe, suites: list[Any], run_dir: Path, run_log: RunLog,
                      run_suite: Callable[..., dict[str, float]] | None, resume_from: Path | None,
                      print_line: Callable[[str], None] | None):
    """The held-out evaluation callback, or None without suites."""
    from urpo_kit.train.callbacks import HeldOutEvalCallback

    if not suites:
        return None
    done = list(read_heldout(run_dir)) if resume_from is not None else []
    return HeldOutEvalCallback(suites, recipe.eval.every, run_dir, run_log, run_suite, done, print_line)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    seconds: float
    final_dir: Path | None
    heldout: dict[int, dict[str, float]]  # step -> held-out metrics


def save_final(run: UrpoRun) -> Path:
    """`final/` in the run folder: full weights loadable by transformers and vLLM (LoRA merged where possible)."""
    from peft import PeftModel

    trainer, folder = run.trainer, run.run_dir / FINAL_DIR
    model = trainer.accelerator.unwrap_model(trainer.model)
    sharded = trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    if isinstance(model, PeftModel) and not sharded:
        if trainer.accelerator.is_main_process:
            model.merge_and_unload().save_pretrained(folder)
            trainer.processing_class.save_pretrained(folder)
        trainer.accelerator.wait_for_everyone()
    else:  # full weights, or (LoRA under ZeRO-3/FSDP) the adapter: the Trainer gathers shards itself
        trainer.save_model(str(folder))
    return folder


def train(recipe: Recipe, *, resume: bool = False, progress: bool = True, **kwargs: Any) -> TrainResult:
    """Build and run a URPO training run; returns where it went and the held-out figures."""
    start = time.perf_counter()
    run = build_run(recipe, resume=resume, progress=progress, **kwargs)
    try:
        run.trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
        final = save_final(run)
    finally:
        run.run_log.close()
    run.trainer.create_model_card()  # ours (see build_run), now with the final held-out figures and final/
    return TrainResult(run.run_dir, run.trainer.state.global_step, time.perf_counter() - start, final,
                       read_heldout(run.run_dir))
