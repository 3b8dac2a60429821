"""Trainer callbacks: the run log (metrics.jsonl + TensorBoard), held-out evaluation, plots, a rich progress bar.

Callbacks run on every process. Anything collective (gathering data positions, held-out generation under ZeRO-3 or
FSDP) is therefore done by all ranks alike; only the main process writes files or prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from urpo_kit.train.metrics import RunLog, plot_run
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
                 run_suite: Callable[..., dict[str, float]], done_steps: Iterable[int] = ()):
        self.suites, self.every, self.run_dir, self.run_log = suites, every, run_dir, run_log
        self.run_suite = run_suite
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
                                              progress=state.is_world_process_zero))
        results["heldout/time_s"] = time.perf_counter() - start
        self.done.add(step)
        if state.is_world_process_zero:
            self.run_log.write(step, results, kind="heldout")
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


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimizer steps with the latest reward and step time (main process)."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.progress = Progress(TextColumn("[bold]train[/bold]"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.progress is None or not logs or "reward" not in logs:
            return
        info = f"reward {logs['reward']:.3f}"
        if "step_time" in logs:
            info += f"  {logs['step_time']:.1f} s/step"
        self.progress.update(self.task, info=info)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
