"""Trainer callbacks: the run log (metrics.jsonl + TensorBoard), held-out evaluation, plots, one line per step.

Callbacks run on every process. Anything collective (gathering data positions, held-out generation under ZeRO-3 or
FSDP) is therefore done by all ranks alike; only the main process writes files or prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from urpo_kit.eval.report import summary_table
from urpo_kit.quiet import is_quiet
from urpo_kit.train.label_draws import LabelDraws
from urpo_kit.train.metrics import RunLog, plot_run
from urpo_kit.train.optim import use_role
from urpo_kit.train.rewards import StepObserver

# Keys of the Trainer's end-of-training summary, which is logged like a step but is none.
_SUMMARY = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss")


class RunLogCallback(TrainerCallback):
    """Writes every training log (TRL's metrics plus ours) and the data positions consumed since the last log."""

    def __init__(self, run_log: RunLog, observer: StepObserver, gather: Callable[[Any], list[Any]]):
        self.run_log, self.observer, self.gather = run_log, observer, gather

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if any(k in logs for k in _SUMMARY):
            return
        positions: dict[str, list[int]] = {}
        for part in self.gather([self.observer.drain()]):  # all ranks: collective under DDP
            for step, seen in part.items():
                positions[str(step)] = sorted(set(positions.get(str(step), [])) | set(seen))
        values = {k: v for k, v in logs.items() if v is not None}
        if state.is_world_process_zero:
            self.run_log.write(state.global_step, {**values, "positions": positions})


def heldout_folder(run_dir: Path, step: int) -> Path:
    """The eval run folder (results.json, report.md, logs) of the held-out evaluation at `step`."""
    return run_dir / "eval" / f"step-{step:05d}"


class HeldOutEvalCallback(TrainerCallback):
    """Held-out suites at step 0, every `every` steps and at the end, through the same code as `urpo-kit eval`.

    Every rank runs the suites on the model in generation form (identical greedy work, so the collectives of ZeRO-3
    or FSDP generation line up); only the main process writes the eval folders and the log.
    """

    def __init__(self, suites: list[Any], every: int, run_dir: Path, run_log: RunLog,
                 run_suite: Callable[..., dict[str, float]], done_steps: Iterable[int] = (),
                 print_line: Callable[[str], None] | None = None):
        self.suites, self.every, self.run_dir, self.run_log = suites, every, run_dir, run_log
        self.run_suite, self.print_line = run_suite, print_line
        self.done = set(done_steps)
        self.generation_model: Callable[[], Any] | None = None  # set once the trainer exists
        self.tokenizer: Any = None

    def evaluate(self, state: TrainerState) -> dict[str, float]:
        """run_suite puts the model in eval mode without autograd and restores its mode and the RNG states."""
        step = state.global_step
        results: dict[str, float] = {}
        start = time.perf_counter()
        with self.generation_model() as model:
            for suite in self.suites:
                folder = heldout_folder(self.run_dir, step) if state.is_world_process_zero else None
                results.update(self.run_suite(suite, model, self.tokenizer, folder,
                                              progress=state.is_world_process_zero and not is_quiet()))
        results["heldout/time_s"] = time.perf_counter() - start
        self.done.add(step)
        if state.is_world_process_zero:
            self.run_log.write(step, results, kind="heldout")
            if self.print_line is not None:
                _, rows = summary_table({"": results})
                self.print_line(f"held-out at step {step} ({results['heldout/time_s']:.0f} s): "
                                + "  ".join(f"{name} {value}" for name, value in rows))
        return results

    def _due(self, step: int) -> bool:
        return bool(self.suites) and self.every > 0 and step not in self.done

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if self._due(state.global_step):
            self.evaluate(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._due(state.global_step) and state.global_step % self.every == 0:
            self.evaluate(state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self._due(state.global_step):
            self.evaluate(state)


class PlotsCallback(TrainerCallback):
    """PNG plots of the main curves when training ends (main process; after the final held-out evaluation)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if state.is_world_process_zero:
            plot_run(self.run_dir)


def step_line(step: int, max_steps: int, logs: dict[str, Any], seconds: float, eta: float) -> str:
    """`step 3/8  player 0.412  referee 0.550  12.3 s/step  ETA 1:02`: each role's reward is the mean over its tasks'
    `{task}/{role}/reward_mean` (the run log keeps them per task)."""
    parts = [f"step {step}/{max_steps}"]
    for role in ("player", "referee"):
        values = [v for k, v in logs.items() if k.endswith(f"/{role}/reward_mean") and isinstance(v, (int, float))]
        if values:
            parts.append(f"{role} {sum(values) / len(values):.3f}")
    minutes, secs = divmod(round(eta), 60)
    parts += [f"{seconds:.1f} s/step", f"ETA {minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60
              else f"ETA {minutes}:{secs:02d}"]
    return "  ".join(parts)


class StepLineCallback(TrainerCallback):
    """One line per logged training step on the main process (rewards per role, seconds per step, time left), in
    place of a progress bar, so that a log file or CI output reads like the console. Seconds per step count the
    optimizer step only: held-out evaluations, printed by their own callback, are left out of the ETA."""

    def __init__(self, print_line: Callable[[str], None]):
        self.print_line = print_line
        self.started = 0.0
        self.durations: list[float] = []

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self.durations.append(time.perf_counter() - self.started)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "reward" not in logs or not self.durations:
            return
        seconds = sum(self.durations[-5:]) / len(self.durations[-5:])  # recent steps: the rate settles after warm-up
        self.print_line(step_line(state.global_step, state.max_steps, logs, seconds,
                                  seconds * (state.max_steps - state.global_step)))


class RoleStepCallback(TrainerCallback):
    """Steps by role (`grpo.steps_by_role`): before a step generates, its role's generation settings (the length,
    and the suppressed tokens of a referee step that draws labels: trainer.step_generation) are set on the trainer
    (`bind` it once the trainer exists). TRL generates a step's completions at the step's first micro-batch, which
    comes after `on_step_begin`. With `per_role_optimizer`, the step's role's optimizer state is selected too
    (train.optim); with `systematic_draws`, a referee step that draws labels draws them by train.label_draws."""

    def __init__(self, step_role: Callable[[int], str], settings: dict[str, dict[str, Any]],
                 per_role_optimizer: bool = False, systematic_draws: bool = False):
        self.step_role, self.settings, self.per_role_optimizer = step_role, settings, per_role_optimizer
        self.systematic_draws = systematic_draws
        self.trainer: Any = None
        self.draws: LabelDraws | None = None

    def bind(self, trainer: Any) -> None:
        self.trainer = trainer
        if self.systematic_draws and self.settings["referee"]["suppress_tokens"]:
            self.draws = LabelDraws(trainer.model, trainer.generation_config, len(trainer.processing_class))

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        role = self.step_role(state.global_step)
        if self.per_role_optimizer and self.trainer.optimizer is not None:  # None only before training starts
            use_role(self.trainer.optimizer, role)
        if self.draws is not None:
            self.draws.active = role == "referee"
        # TRL's HF generation reads both (generation_kwargs overrides the model's own config; contract-tested)
        for name, value in self.settings[role].items():
            setattr(self.trainer.generation_config, name, value)
            self.trainer.generation_kwargs[name] = value
