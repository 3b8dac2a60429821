"""The run folder of an evaluation: results.json (every number, the suite, the model, versions, data hashes),
report.md (the summary table, a table per benchmark kind, the formulas) and charts.png; and the side-by-side
comparison of two runs. The summary table is also the held-out table of training (console and model card).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from urpo_kit.config.loader import origin_of
from urpo_kit.config.suite import EvalSuite
from urpo_kit.errors import UrpoError
from urpo_kit.eval.stats import Change, paired_bootstrap

__all__ = ["CHART_FILE", "COMPARE_HEADER", "INTERVALS", "REPORT_FILE", "RESULTS_FILE", "SuiteResult", "compare_runs",
           "headline", "load_run", "markdown_table", "paired_changes", "summary_table", "with_interval", "write_run"]


@dataclass
class SuiteResult:
    """Everything one suite run measured: flat `metrics` for loggers, and per-benchmark details for the report."""

    suite: EvalSuite
    model: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    player: list[dict[str, Any]] = field(default_factory=list)
    referee: list[dict[str, Any]] = field(default_factory=list)
    winrate: list[dict[str, Any]] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0


RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CHART_FILE = "charts.png"
PACKAGES = ("urpo-kit", "torch", "transformers", "lm_eval", "datasets", "numpy")
# the metric of each benchmark kind whose per-row scores results.json keeps (`row_scores` in the benchmark details)
HEADLINES = {"player": "accuracy", "referee": "accuracy", "winrate": "win_rate"}
CI_SUFFIXES = ("_ci_low", "_ci_high")
SUMMARY_SUFFIXES = ("accuracy", "win_rate")  # the figures of the summary table (raw and length-controlled win rate)
COMPARE_HEADER = ("metric", "A", "B", "B - A", "95% CI (paired)")

FORMULAS = """\
## How the numbers are computed

- **Player accuracy** (our tasks, run through lm-eval): mean over rows of `verifier(extract(generation), gold)`, the
  task's own extraction and verifier; **extracted** is the share of generations from which an answer could be
  extracted. lm-eval tasks by name report lm-eval's own metric (named in the table).
- **Referee accuracy** (RewardBench protocol for generative judges): each item is shown in an order drawn with
  `numpy.random.RandomState(seed)` item by item (a pair is swapped when `rand() > 0.5`; with N candidates the best
  is swapped to position `randint(0, N)`, as RewardBench 2 does). A pick of the best response scores 1, another
  pick 0, an unparseable judgment 1/N (0.5 for a pair) and is also counted under *parse failures*.
  With `both_orders` each item is judged in that order and in reverse: 1 when both pick the best, 0 when both pick
  the same other response, 1/N otherwise; **consistency** = share of items whose two judgments (both parsed)
  picked the same response, and **random-order accuracy** scores the first order alone (equal to `order: random`).
  **first position** = share of parsed judgments that picked the response shown first (0.5 means no position bias
  on balanced data). **reward** = mean of the task's ranking score over judgments (unparsed: 0), the training
  reward's correctness term.
- **RewardBench sections** (v1, `calculate_scores_per_section`): for each section k,
  `section_k = sum_s(acc_s * EXAMPLE_COUNTS[s]) / sum_s(EXAMPLE_COUNTS[s])` over its subsets s present in the data;
  the **score** is the mean of the sections present (prior sets are not folded in).
- **Win rate (AlpacaEval-protocol, judge=X)**: the model's answer against the reference answer, shown in the same
  seeded random order; `(wins + draws / 2) / items`, where an unparseable judgment is a draw. This follows the
  AlpacaEval protocol with the named judge; it is not an AlpacaEval score.
- **LC win rate** (length-controlled, as AlpacaEval 2 fits it: Dubois et al. 2024, arXiv 2404.04475, alpaca_eval
  `metrics/glm_winrate.py`, GLM `length_controlled_v1`): a logistic regression of each row's outcome (a draw is 0.5)
  on `theta + phi * tanh(delta / std(delta)) + psi * difficulty`, delta being answer minus reference length in
  characters and difficulty the benchmark's optional `difficulty` per row; LC = mean over rows of
  `sigmoid(theta + psi * difficulty)`, the win rate predicted at zero length difference. **length weight** = phi
  (> 0: the judge prefers longer answers). Not done here: AlpacaEval's regularisation towards its own "gamed"
  baseline annotations and its cross-validated L1 penalty (a 1e-4 L2 penalty keeps one-sided fits finite).
"""
INTERVALS = """\
- **Intervals** `value [low, high]`: the 95% Wilson score interval of the mean over the benchmark's rows, with
  p = mean per-row score and n = rows (a fractional score, a tie's 0.5 or 1/N, counts as a fractional success). The
  per-row scores are kept in results.json (`row_scores`); RewardBench sections, weighted across subsets, have none.
- **Paired change** (`urpo-kit eval --compare`, the end-of-training table): the mean per-row difference B - A over
  rows matched by key, with a 95% percentile bootstrap interval (2000 resamples of the rows with replacement,
  `numpy.random.RandomState(0)`). Given only when both runs scored the same rows (same data_sha256 and row keys).
"""
FORMULAS += INTERVALS


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _payload(result: SuiteResult) -> dict[str, Any]:
    origin = origin_of(result.suite)
    return {
        "suite": result.suite.model_dump(mode="json"),
        "suite_file": str(origin) if origin else None,
        "model": result.model,
        "versions": versions(),
        "started": result.started,
        "seconds": result.seconds,
        "metrics": result.metrics,
        "player": result.player,
        "referee": result.referee,
        "winrate": result.winrate,
    }


def write_run(result: SuiteResult, folder: Path) -> None:
    """results.json, report.md and charts.png in `folder` (the per-sample logs are already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = _payload(result)
    (folder / RESULTS_FILE).write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n",
                                       encoding="utf-8")
    (folder / REPORT_FILE).write_text(report_markdown(payload), encoding="utf-8")
    values = headline(payload)
    if values:
        bar_chart({k: [v] for k, v in values.items()}, [payload["model"]["name"]], folder / CHART_FILE,
                  f"{payload['suite']['name']}: headline metrics")


def load_run(folder: Path) -> dict[str, Any]:
    path = folder / RESULTS_FILE if folder.is_dir() else folder
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UrpoError(f"{path}: not an eval run ({e})") from None


def headline(payload: dict[str, Any]) -> dict[str, float]:
    """The metrics worth a bar: accuracy per player and referee benchmark, consistency, win rate."""
    wanted = ("/accuracy", "/consistency", "/win_rate")
    return {k: v for k, v in payload["metrics"].items() if k.endswith(wanted) and not k.startswith("eval/")}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def with_interval(metrics: dict[str, Any], key: str) -> str:
    """`0.281 [0.205, 0.371]` where `metrics` hold the key's 95% interval (`<key>_ci_low/_ci_high`), else the value."""
    value, low, high = (metrics.get(key + s) for s in ("", *CI_SUFFIXES))
    return _fmt(value) if low is None or high is None else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def markdown_table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c.replace("|", "\\|") for c in row) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def summary_table(columns: dict[str, dict[str, Any]],
                  changes: dict[str, Change | str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the one summary table: each accuracy and win rate (`SUMMARY_SUFFIXES`) with its 95%
    interval, one column per evaluation; with two columns also the change, with its paired interval where `changes`
    has one (else the plain difference). report.md, the training console and the model card all show this table."""
    names = sorted({k for metrics in columns.values() for k in metrics
                    if k.endswith(SUMMARY_SUFFIXES) and not k.startswith("eval/")})
    header = ["metric", *columns] + (["change"] if len(columns) == 2 else [])
    rows = []
    for name in names:
        row = [name, *(with_interval(metrics, name) for metrics in columns.values())]
        if len(columns) == 2:
            change = (changes or {}).get(name)
            if not isinstance(change, Change):
                a, b = (metrics.get(name) for metrics in columns.values())
                change = f"{b - a:+.3f}" if a is not None and b is not None else ""
            row.append(str(change))
        rows.append(row)
    return header, rows


def report_markdown(payload: dict[str, Any]) -> str:
    suite, model = payload["suite"], payload["model"]
    parts = [f"# Eval: {suite['name']}\n",
             f"model `{model['name']}` ({model['parameters']:,} parameters, {model['dtype']}), "
             f"started {payload['started']}, {payload['seconds']:.1f} s. "
             + ", ".join(f"{k} {v}" for k, v in payload["versions"].items()) + "\n"]
    header, rows = summary_table({"value [95% CI]": payload["metrics"]})
    if rows:
        parts += ["## Summary\n", markdown_table(header, rows)]
    if payload["player"]:
        rows = [[p["name"], p.get("source") or f"lm-eval `{p['lm_eval_task']}` ({p.get('accuracy_metric')})",
                 p.get("rows"), with_interval(p["metrics"], "accuracy"), p["metrics"].get("extracted"),
                 f"{p['seconds']:.1f}"]
                for p in payload["player"]]
        parts += ["## Player\n",
                  markdown_table(["benchmark", "data", "rows", "accuracy", "extracted", "seconds"], rows)]
    if payload["referee"]:
        rows = [[r["name"], r["source"], r["order"], r["metrics"]["n"], with_interval(r["metrics"], "accuracy"),
                 r["metrics"]["parse_failures"], r["metrics"].get("consistency"), r["metrics"].get("first_position"),
                 r["metrics"].get("random_order_accuracy"), f"{r['seconds']:.1f}"] for r in payload["referee"]]
        parts += ["## Referee\n", markdown_table(["benchmark", "data", "order", "items", "accuracy", "parse failures",
                                          "consistency", "first position", "random-order accuracy", "seconds"], rows)]
        for r in payload["referee"]:
            if len(r["subsets"]) > 1 or r["sections"]:
                rows = [[s, v["n"], with_interval(v, "accuracy")] for s, v in r["subsets"].items()]
                rows += [[f"**{s}** (section)", "", v] for s, v in r["sections"].items()]
                parts += [f"### {r['name']}: subsets\n", markdown_table(["subset", "items", "accuracy"], rows)]
    if payload["winrate"]:
        rows = [[f"{w['name']} ({w['label']})", w["metrics"]["n"], with_interval(w["metrics"], "win_rate"),
                 w["metrics"].get("lc_win_rate"), w["metrics"].get("lc_length_weight"),
                 w["metrics"]["parse_failures"], w["metrics"]["answer_chars"], w["metrics"]["reference_chars"],
                 f"{w['seconds']:.1f}"] for w in payload["winrate"]]
        parts += ["## Win rate\n", markdown_table(["benchmark", "items", "win rate", "LC win rate", "length weight",
                                                   "parse failures (draws)", "answer chars", "reference chars",
                                                   "seconds"], rows)]
    logs = [f for p in payload["player"] for f in p.get("samples_files", [])]
    logs += [b["log_file"] for b in payload["referee"] + payload["winrate"]]
    parts.append(f"Charts: `{CHART_FILE}`. Per-sample logs: " + ", ".join(f"`{f}`" for f in logs) + ".\n")
    parts.append(FORMULAS)
    return "\n".join(parts)


def bar_chart(values: dict[str, list[float]], series: Sequence[str], path: Path, title: str) -> None:
    """Horizontal grouped bars, one group per metric and one bar per series (run), values in [0, 1]."""
    from matplotlib.figure import Figure

    labels = list(values)
    height = 0.8 / len(series)
    fig = Figure(figsize=(9, 1.2 + 0.45 * len(labels) * len(series)))
    ax = fig.add_subplot()
    for s, name in enumerate(series):
        ys = [i + (s - (len(series) - 1) / 2) * height for i in range(len(labels))]
        xs = [values[k][s] if not math.isnan(values[k][s]) else 0.0 for k in labels]
        bars = ax.barh(ys, xs, height=height, label=name)
        ax.bar_label(bars, labels=[_fmt(values[k][s]) for k in labels], padding=3, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _details(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each benchmark's detail under its headline metric's flat key (`player/<name>/accuracy`, ...)."""
    return {f"{role}/{d['name']}/{metric}": d for role, metric in HEADLINES.items() for d in payload.get(role, [])}


def paired_changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Change | str]:
    """For each headline metric both runs (results.json payloads) measured: the paired bootstrap change B - A, or
    why none is given. Rows pair only when both runs scored the same ones: the same data (data_sha256) and row keys;
    the change of two different row sets is not a paired quantity."""
    out: dict[str, Change | str] = {}
    details_b = _details(b)
    for key, da in _details(a).items():
        db = details_b.get(key)
        if db is None:
            continue
        rows_a, rows_b = da.get("row_scores"), db.get("row_scores")
        if not rows_a or not rows_b:
            out[key] = "not given: no row scores"
        elif da.get("data_sha256") != db.get("data_sha256") or rows_a.keys() != rows_b.keys():
            out[key] = "not given: different rows (unpaired)"
        else:
            out[key] = paired_bootstrap(rows_a, rows_b) or "not given: fewer than 2 rows"
    return out


def compare_runs(run_a: Path, run_b: Path, output: Path) -> list[list[str]]:
    """Every metric of two runs side by side (accuracies with their intervals, headline changes with a paired
    interval); writes compare.md and compare.png to `output` and returns the table's rows (COMPARE_HEADER)."""
    a, b = load_run(run_a), load_run(run_b)
    changes = paired_changes(a, b)
    keys = [k for k in dict.fromkeys([*a["metrics"], *b["metrics"]]) if not k.endswith(CI_SUFFIXES)]
    rows = []
    for k in keys:
        va, vb, change = a["metrics"].get(k), b["metrics"].get(k), changes.get(k, "")
        rows.append([k, with_interval(a["metrics"], k), with_interval(b["metrics"], k),
                     _fmt(vb - va if va is not None and vb is not None else None),
                     change.bracket if isinstance(change, Change) else change])
    output.mkdir(parents=True, exist_ok=True)
    names = [f"A: {run_a}", f"B: {run_b}"]
    (output / "compare.md").write_text(
        f"# Compare\n\n- A: `{run_a}` (model `{a['model']['name']}`, suite `{a['suite']['name']}`)\n"
        f"- B: `{run_b}` (model `{b['model']['name']}`, suite `{b['suite']['name']}`)\n\n"
        f"{markdown_table(COMPARE_HEADER, rows)}\n{INTERVALS}", encoding="utf-8")
    shared = {k: [headline(a)[k], headline(b)[k]] for k in headline(a) if k in headline(b)}
    if shared:
        bar_chart(shared, names, output / "compare.png", "A vs B")
    return rows
