"""Benchmark one GRPO step three ways, in one process, on the same prompts (arithmetic problems from the shipped
task), with the recipe's model, LoRA, dtype and sampling:

1. plain    - GRPO with only a verifier reward (the answers are checked against the gold);
2. urpo     - the same prompts treated as open-ended: the policy model itself ranks its G answers (self-referee,
               as the shipped open-ended task configures it: likelihood verdicts, both orders);
3. two-model - the same judging done by a separate second copy of the model, held in memory for the run (the
               pipeline URPO replaces: a policy plus a distinct judge or reward model).

Reported per phase: the optimizer step time (TRL's `step_time`: generation, rewards, loss, backward, update; median
over the steps after the first), the part of it spent judging, and the peak resident memory of the process during
the phase (RSS sampled every 5 ms from /proc; before each phase the previous one is freed, garbage-collected and
`malloc_trim`med, so a phase starts near the process baseline), and that peak less the RSS at the phase's start: what
the phase held, the CPU counterpart of `torch.cuda.max_memory_allocated` (which leaves out the CUDA context); and
the model state (weights, gradients, optimizer state of every model held), the part that grows with model size and
that a GPU must hold whatever the batch: at 135M parameters a step's activations and logits (49k-token vocabulary)
outweigh a second copy of the model, at 7B the models dominate. Targets: urpo step <= 1.10 x plain step; urpo peak
memory <= 0.6 x two-model peak memory.

    python scripts/bench_train.py                       # recipes/quickstart.yaml settings, 3 steps per phase
    python scripts/bench_train.py --steps 4 grpo.prompts_per_step=8 roles.player.max_new_tokens=128
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback

from urpo_kit.compiler import prepare_task
from urpo_kit.config.loader import load_recipe
from urpo_kit.config.schema import Recipe
from urpo_kit.kinds import Episode, OpenEndedEpisode
from urpo_kit.models import load_tokenizer
from urpo_kit.referee import HFBackend
from urpo_kit.train.layout import batch_layout
from urpo_kit.train.rewards import KindReward
from urpo_kit.train.self_referee import SelfReferee
from urpo_kit.train.trainer import make_trainer, trl_record

ROOT = Path(__file__).resolve().parent.parent
console = Console()


class PeakRSS:
    """Highest resident set size of this process while the context is open, sampled from /proc/self/statm."""

    def __init__(self, interval: float = 0.005):
        import os

        self.interval, self.page = interval, os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


class StepTimes(TrainerCallback):
    """TRL's per-step figures as they are logged (logging_steps = 1)."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "step_time" in logs:
            self.logs.append(dict(logs))


@dataclass
class Phase:
    name: str
    step_s: float
    judge_s: float
    peak_gb: float
    base_gb: float        # resident before the phase built anything: interpreter, libraries, the prompts
    state_gb: float       # weights, gradients and optimizer state of every model the phase holds
    steps: list[float]

    @property
    def held_gb(self) -> float:
        """What the phase itself held at its peak: models, optimizer, activations, generation caches."""
        return self.peak_gb - self.base_gb


def state_bytes(*modules: Any, optimizer: Any = None) -> int:
    """Bytes of the parameters (and their gradients) and buffers of `modules`, plus the optimizer's state: the
    memory that scales with the models, apart from the activations and caches of a step."""
    import torch

    seen: set[int] = set()
    total = 0
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    for t in tensors + [p.grad for p in tensors if getattr(p, "grad", None) is not None]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def free_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: RSS may then keep freed memory, and the peaks read high
        pass


def datasets(recipe: Recipe, n: int):
    """The same arithmetic prompts as verifiable rows (plain) and as open-ended rows (urpo, two-model)."""
    from datasets import Dataset

    arithmetic = prepare_task(ROOT / "tasks" / "arithmetic.yaml", limit=n)
    open_ended = prepare_task(ROOT / "tasks" / "instructions-offline.yaml", limit=1)
    verifiable = [arithmetic.task.episode(row, row_number=num, position=i)
                  for i, (row, num) in enumerate(zip(arithmetic.rows.rows, arithmetic.rows.row_numbers))]
    judged = [Episode(open_ended.name, ep.messages, OpenEndedEpisode(ep.messages[-1]["content"]), ep.row,
                      ep.position) for ep in verifiable]
    tokenizer = load_tokenizer(recipe.model)
    return (arithmetic.task, Dataset.from_list([trl_record(e, tokenizer) for e in verifiable]),
            open_ended.task, Dataset.from_list([trl_record(e, tokenizer) for e in judged]))


def run_phase(name: str, recipe: Recipe, steps: int, build: Callable[[], tuple[Any, Any, Any]]) -> Phase:
    """`build` returns (dataset, rewards, referee, separate judge backend or None); everything a phase holds is
    built, run and dropped inside its memory window."""
    free_memory()
    timer = StepTimes()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as out, PeakRSS() as memory:
        base = memory.rss()
        dataset, rewards, referee, extra = build()
        layout = batch_layout(recipe.grpo, 1, whole_groups=True)
        trainer = make_trainer(recipe, layout, dataset, rewards, referee, [timer], output_dir=out,
                               max_steps=steps, logging_steps=1, save_strategy="no")
        if extra is not None:  # the two-model pipeline: its judge replaces the policy as the referee's backend
            referee.backend.bind(extra)
        console.print(f"[bold]{name}[/bold]: {steps} steps")
        trainer.train()
        judge_model = [extra.model] if extra is not None else []
        state = state_bytes(trainer.model, *judge_model, optimizer=trainer.optimizer)
        del trainer, extra, referee, rewards, judge_model
    step_times = [log["step_time"] for log in timer.logs]
    judge = [sum(v for k, v in log.items() if k.endswith("/referee/time_s")) for log in timer.logs]
    later = slice(1, None) if len(step_times) > 1 else slice(None)
    return Phase(name, statistics.median(step_times[later]), statistics.median(judge[later]),
                 memory.peak / 2**30, base / 2**30, state / 2**30, step_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="recipe key.path=value overrides")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "quickstart.yaml")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per phase (the first is warm-up)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-train.json")
    args = parser.parse_args()

    recipe = load_recipe(args.recipe, args.overrides)
    n = recipe.grpo.prompts_per_step * args.steps
    arithmetic, plain_data, open_ended, judged_data = datasets(recipe, n)

    def plain():
        return plain_data, [KindReward("verifiable", [arithmetic])], None, None

    def urpo():
        referee = SelfReferee([open_ended], recipe)
        return judged_data, [KindReward("open_ended", [open_ended])], referee, None

    def two_model():
        from urpo_kit.models import load_model, load_tokenizer

        referee = SelfReferee([open_ended], recipe)
        judge = HFBackend(load_model(recipe.model), load_tokenizer(recipe.model))
        return judged_data, [KindReward("open_ended", [open_ended])], referee, judge

    phases = [run_phase("plain", recipe, args.steps, plain), run_phase("urpo", recipe, args.steps, urpo),
              run_phase("two-model", recipe, args.steps, two_model)]
    by = {p.name: p for p in phases}
    table = Table(title=f"One GRPO step: {recipe.model.name}, {recipe.grpo.prompts_per_step} prompts x "
                        f"{recipe.grpo.group_size} answers, {recipe.roles.params('player').max_new_tokens} new tokens")
    for column in ("phase", "step (s)", "judging (s)", "peak RSS (GiB)", "held (GiB)", "model state (GiB)",
                   "step / plain", "peak / two-model", "held / two-model", "state / two-model"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    two = by["two-model"]
    for p in phases:
        table.add_row(p.name, f"{p.step_s:.1f}", f"{p.judge_s:.1f}", f"{p.peak_gb:.2f}", f"{p.held_gb:.2f}",
                      f"{p.state_gb:.2f}", f"{p.step_s / by['plain'].step_s:.2f}", f"{p.peak_gb / two.peak_gb:.2f}",
                      f"{p.held_gb / two.held_gb:.2f}", f"{p.state_gb / two.state_gb:.2f}")
    console.print(table)
    ratios = {"step_ratio": by["urpo"].step_s / by["plain"].step_s,
              "memory_ratio": by["urpo"].peak_gb / two.peak_gb,
              "held_memory_ratio": by["urpo"].held_gb / two.held_gb,
              "state_memory_ratio": by["urpo"].state_gb / two.state_gb}
    console.print(f"urpo / plain step time: {ratios['step_ratio']:.2f} (target <= 1.10); urpo / two-model peak "
                  f"memory: {ratios['memory_ratio']:.2f} of the process, {ratios['held_memory_ratio']:.2f} of what "
                  f"the phase held, {ratios['state_memory_ratio']:.2f} of the model state (target <= 0.60)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"recipe": str(args.recipe), "overrides": args.overrides,
                                    "phases": [asdict(p) | {"held_gb": p.held_gb} for p in phases], **ratios},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
