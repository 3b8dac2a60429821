"""Per-task, per-role training metrics: names, the few statistics we need, the run log (JSONL + TensorBoard), plots.

Reward functions emit values through TRL's `log_metric` hook, which averages every value emitted during a logging
window across all processes; so a per-completion value is emitted once per completion and its logged figure is an
exact mean over completions, and a per-group value once per group. Names are `{task}/{role}/{what}`:

every task (role `player` for verifiable and open-ended tasks, `referee` for preference tasks)
  reward_mean     mean reward of its completions (the weighted sum of the task's RewardSpec)
  reward_std      mean within-group reward std (the spread GRPO turns into a learning signal)
  zero_var_frac   share of groups whose G rewards are all equal (no learning signal)
  length_mean     mean completion length in tokens
verifiable: `player/accuracy` (verifier score), `player/answer_rate` (an answer was extracted)
preference: `referee/accuracy` (exact match with the gold ranking; choice accuracy for pairs),
  `referee/parse_rate`, `referee/first_shown_best_rate` (position bias: the first shown candidate ranked best)
open-ended (the self-referee): `referee/parse_rate` (judgments that parsed), `referee/no_signal_rate` (groups where
  none parsed: equal rewards), `referee/both_orders_agreement` (debias both_orders), `referee/rank_length_spearman`
  (Spearman between the referee's scores and answer lengths: persistently high is a length-hacking warning),
  `referee/time_s` (judging time per step).
TRL adds its own (`reward`, `reward_std`, `frac_reward_zero_std`, `rewards/<kind>/mean`, `completions/*`, `kl`,
`entropy`, `step_time`, ...), and held-out evaluations are logged as `player/<bench>/accuracy`,
`referee/<bench>/accuracy`, ... with `kind: heldout` in metrics.jsonl (TensorBoard prefix `heldout/`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from urpo_kit.kinds.base import LogMetric


# (title, record kind, metric-name suffix, file): one PNG per curve family, only metrics on one scale per plot
PLOTS = (
    ("Held-out accuracy: player and referee, as each suite reads them", "heldout", "/accuracy", "heldout.png"),
    ("Training reward per task", "train", "/reward_mean", "reward.png"),
    ("Training accuracy (verifier / referee vs gold)", "train", "/accuracy", "accuracy.png"),
    ("Referee parse rate", "train", "/parse_rate", "parse_rate.png"),
    ("Mean response length (tokens)", "train", "/length_mean", "length.png"),
    ("Self-referee rank vs length (Spearman)", "train", "/rank_length_spearman", "rank_length.png"),
    ("Zero-variance groups", "train", "/zero_var_frac", "zero_var.png"),
    ("Self-referee time per step (s)", "train", "/time_s", "referee_time.png"),
)


def name(task: str, role: str, what: str) -> str:
    return f"{task}/{role}/{what}"


def group_stats(log: LogMetric, prefix: str, groups: Iterable[Sequence[float]]) -> None:
    """Within-group reward std and the share of groups whose rewards are all equal (no GRPO signal)."""
    for rewards in groups:
        std = statistics.pstdev(rewards) if len(rewards) > 1 else 0.0
        log(f"{prefix}/reward_std", std)
        log(f"{prefix}/zero_var_frac", float(math.isclose(std, 0.0, abs_tol=1e-9)))


class RunLog:
    """`metrics.jsonl` and TensorBoard event files in the run folder, written by the main process only.

    On resume, records after the checkpoint's step are dropped from the JSONL and purged from TensorBoard, so a run
    killed between two checkpoints does not show the lost steps twice.
    """

    def __init__(self, run_dir: Path, *, resume_step: int | None = None, enabled: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"),
                                    purge_step=None if resume_step is None else resume_step + 1)

    def write(self, step: int, values: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, **values}
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(key if kind == "train" else f"{kind}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a run log; a last line torn by a crash mid-write (no newline, not JSON) is left out."""
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not text.endswith("\n"):
        try:
            json.loads(lines[-1])
        except ValueError:
            lines.pop()
    return [json.loads(line) for line in lines]


def read_heldout(run_dir: Path) -> dict[int, dict[str, float]]:
    """Step -> held-out metrics, from the run log (empty before any held-out evaluation)."""
    path = run_dir / "metrics.jsonl"
    records = read_metrics(path) if path.exists() else []
    return {r["step"]: {k: v for k, v in r.items() if k not in ("step", "kind")}
            for r in records if r.get("kind") == "heldout"}


def curves(records: Sequence[dict[str, Any]], kind: str, suffix: str) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of the finite numeric metrics named `...suffix` in the records of one kind."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        if r.get("kind") != kind:
            continue
        for k, v in r.items():
            if k.endswith(suffix) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                series.setdefault(k, []).append((r["step"], v))
    return series


def plot_run(run_dir: Path) -> list[Path]:
    """PNG plots of the main curves from `metrics.jsonl` into `run_dir/plots`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    for title, kind, suffix, filename in PLOTS:
        series = curves(records, kind, suffix)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, points in sorted(series.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 20 else None, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        written.append(out_dir / filename)
    return written
