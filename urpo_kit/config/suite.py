"""Eval suites: which player, referee and win-rate benchmarks to run, on what data, with which sampling.

A suite is a YAML file validated like tasks and recipes (unknown keys are errors, every error names file and line).
The same suite drives `urpo-kit eval` and the trainer's held-out evaluation, so both report the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, model_validator

from urpo_kit.config.loader import Overrides, load_model
from urpo_kit.config.schema import EvalRoles, ModelSpec, OutputPath, RefereeSpec, Sampling, Source, Strict

__all__ = ["EvalSuite", "PlayerBenchmark", "RefereeBenchmark", "WinRateBenchmark", "load_suite"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Benchmark(Strict):
    kind: ClassVar[str]   # the task kind a benchmark's `task` must be
    _overrides_at: Any = PrivateAttr(None)  # where each override was written (set by the loader)

    name: str | None = Field(None, pattern=NAME_PATTERN,
                             description="metrics key (`player/NAME/accuracy`); default: the task's name")
    overrides: dict[str, Any] = Field(default_factory=dict, description="key.path: value overrides for `task`")
    limit: int | None = Field(None, ge=1, description="evaluate at most this many rows (default: the suite's limit)")
    sampling: Sampling = Field(default_factory=Sampling, description="overrides of the suite's sampling for this role")


class PlayerBenchmark(_Benchmark):
    """A player benchmark run through lm-eval: one of our verifiable tasks (exported) or an lm-eval task by name."""

    kind = "verifiable"

    task: Path | None = Field(None, description="verifiable task YAML, exported as an lm-eval task")
    lm_eval: str | None = Field(None, description="an lm-eval task name (gsm8k, minerva_math, ...); needs its data")
    stop: list[str] = Field(default_factory=list, description="stop sequences (the eos token always stops)")
    metric: str | None = Field(None, description="lm-eval metric reported as accuracy, e.g. `exact_match,strict-match` "
                                                 "(default: the first one)")
    num_fewshot: int | None = Field(None, ge=0, description="few-shot examples (lm-eval tasks by name only)")

    @model_validator(mode="after")
    def _one_source(self) -> "PlayerBenchmark":
        if (self.task is None) == (self.lm_eval is None):
            raise ValueError("give exactly one of `task` (our verifiable task) or `lm_eval` (an lm-eval task name)")
        if self.lm_eval is not None and self.overrides:
            raise ValueError("`overrides` apply to `task` only")
        if self.task is not None and (self.metric is not None or self.num_fewshot is not None):
            raise ValueError("`metric` and `num_fewshot` apply to `lm_eval` tasks only")
        return self


class RefereeBenchmark(_Benchmark):
    """Pairwise (or best-of-N) accuracy of the model as referee on data with a known best response."""

    kind = "preference"

    task: Path | None = Field(None, description="preference task YAML: its gold order and its referee prompt")
    source: Source | None = Field(None, description="RewardBench-format rows (prompt, chosen, rejected[, subset]) "
                                                    "or hh-rlhf transcripts (chosen, rejected), as `urpo-kit judge` "
                                                    "reads them")
    order: Literal["random", "both_orders"] = Field(
        "random", description="random: one seeded order per item (RewardBench); both_orders: a win only when both "
                              "presentation orders pick the best")
    candidates: int | None = Field(None, ge=2, description="best-of-N: the best and the first N-1 others "
                                                           "(RewardBench 2 uses 4); rows with fewer are skipped")
    referee: RefereeSpec | None = Field(None, description="referee spec (default: the task's, else listwise); the "
                                                         "benchmark sets presentation orders itself (`order`), so "
                                                         "`debias` does not apply")

    @model_validator(mode="after")
    def _one_source(self) -> "RefereeBenchmark":
        if (self.task is None) == (self.source is None):
            raise ValueError("give exactly one of `task` (a preference task) or `source` (a preference file)")
        if self.task is None and self.overrides:
            raise ValueError("`overrides` apply to `task` only")
        return self


class WinRateBenchmark(_Benchmark):
    """Open-ended answers against reference answers, judged pairwise (the AlpacaEval protocol, not its score)."""

    kind = "open_ended"

    task: Path = Field(..., description="open-ended task YAML: its player prompt is what the model answers")
    reference: str = Field(..., description="Jinja2 template rendering the reference answer from a row, "
                                            "e.g. `{{ output }}`")
    judge: ModelSpec | None = Field(None, description="judge model (default: the evaluated model itself)")
    referee: RefereeSpec = Field(default_factory=lambda: RefereeSpec(mode="pairwise", debias="none"),
                                 description="judge spec (default: pairwise, referee/pair.j2); one judgment per row "
                                             "in a seeded order, so `mode` is pairwise and `debias` none")
    judge_sampling: Sampling = Field(default_factory=Sampling, description="overrides of the referee sampling")
    difficulty: str | None = Field(None, description="Jinja2 template rendering a row's instruction difficulty (a "
                                                     "number, e.g. AlpacaEval's `{{ instruction_difficulty }}`) for "
                                                     "the length-controlled win rate's GLM; default: none")

    @model_validator(mode="before")
    @classmethod
    def _pairwise_referee(cls, data: Any) -> Any:
        """A referee written without mode or debias is the protocol's: pairwise, shown as given."""
        if isinstance(data, dict) and isinstance(data.get("referee"), dict):
            data = {**data, "referee": {"mode": "pairwise", "debias": "none", **data["referee"]}}
        return data

    @model_validator(mode="after")
    def _protocol(self) -> "WinRateBenchmark":
        if self.referee.mode != "pairwise" or self.referee.debias != "none":
            raise ValueError("a win rate judges each answer against its reference once, pairwise: referee.mode "
                             "must be pairwise and referee.debias none")
        return self


class EvalSuite(Strict):
    """An eval suite file (see recipes/eval/)."""

    _origin: Path | None = PrivateAttr(None)  # the YAML file this suite was loaded from (set by the loader)
    _positions: Any = PrivateAttr(None)  # loader.PositionMap

    name: str = Field(..., pattern=NAME_PATTERN, description="suite name (run folder and metrics prefix)")
    description: str | None = Field(None, description="one line for the report")
    model: ModelSpec = Field(default_factory=ModelSpec, description="model for `urpo-kit eval` (`--model` overrides)")
    player: list[PlayerBenchmark] = Field(default_factory=list, description="player benchmarks")
    referee: list[RefereeBenchmark] = Field(default_factory=list, description="referee benchmarks")
    winrate: list[WinRateBenchmark] = Field(default_factory=list, description="win-rate benchmarks")
    sampling: EvalRoles = Field(default_factory=EvalRoles, description="sampling per role (greedy by default)")
    batch_size: int = Field(16, ge=1, description="generation batch size (lm-eval's HFLM and the referee)")
    precision: Literal["model", "float32"] = Field(
        "model", description="the precision the model is read at: `model` as it is loaded or trained; `float32` "
        "upcasts its floating weights for the suite and restores them after (a bfloat16 135M model loses 0.12-0.17 "
        "of its likelihood preference signal to rounding; costs about 2x the time and float32 weight memory)")
    limit: int | None = Field(None, ge=1, description="default row limit of every benchmark")
    seed: int = Field(0, description="seed of presentation orders (and lm-eval's seeds stay its defaults)")
    output_dir: Annotated[Path, OutputPath()] = Field(
        Path("runs/eval"), description="where `urpo-kit eval` puts its run folders (NAME-TIME; --output names one)")
    allow_code: bool = Field(False, description="allow dotted-path `pkg.mod:fn` verifiers and generators")

    @model_validator(mode="after")
    def _something_to_run(self) -> "EvalSuite":
        if not (self.player or self.referee or self.winrate):
            raise ValueError("a suite needs at least one `player`, `referee` or `winrate` benchmark")
        return self


def load_suite(path: str | os.PathLike[str], overrides: Overrides = ()) -> EvalSuite:
    """An eval suite YAML; task, source and template paths come back absolute (relative to the suite's folder)."""
    return load_model(EvalSuite, path, overrides)
