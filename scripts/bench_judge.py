"""Benchmark the referee modes and verdicts on the bundled model (or any model).

Every benchmark runs once per verdict (`--verdicts`): `sample` generates the judgment text and parses it,
`likelihood` reads the label (or score) probabilities after the verdict line in one forward pass.

1. Groups of G answers per prompt (the model's own answers to the shipped open-ended instructions, generated once
   and cached): listwise judging against pointwise judging of the same groups, per verdict. Reports time per group,
   parse rates, listwise's speed-up over pointwise (target >= 3x) and agreement between the two: Kendall (share of
   answer pairs ordered alike, over pairs the pointwise scores do not tie) and top-1 (listwise's best is
   pointwise's best; 1/k when it ties with k-1 others).
2. hh-rlhf harmless pairs (`../shared/data/hh-rlhf/harmless-base-test.jsonl.gz`, read in place; skipped with a
   message if absent): pairwise against pointwise, per verdict: time per pair, accuracy with gold (a tie or a failed
   parse counts 1/2) and, pairwise, how often the label shown first won (position bias).
3. Likelihood against sample: the time ratio per benchmark and mode.

    python scripts/bench_judge.py --prompts 24 --pairs 100 --dtype bfloat16
    python scripts/bench_judge.py --prefill      # sampled judgments start with "Ranking: [" or "Score:" (see below)

`--prefill` starts each sampled reply with its verdict line (`Ranking: [` listwise and pairwise, `Score:`
pointwise), for models that do not write the format line by themselves (SmolLM2-135M writes "Score: N" in about 3%
of judgments). A likelihood verdict always reads right after that line, pointwise after `Score: ` with a trailing
space (SmolLM2's tokenizer writes " 7" as a space and a digit, so the digit alone must be the next token); the
pointwise `--scale` is 1-9 by default for both verdicts, as `10` is two tokens there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from urpo_kit.compiler import prepare_task
from urpo_kit.config.schema import Mode, Sampling, VerdictKind
from urpo_kit.referee import HFBackend, SamplingParams, Verdict
from urpo_kit.referee.modes import MODES
from urpo_kit.referee.rows import JudgeRow, RowInput, gold_credit, judge_item, row_key, to_result
from urpo_kit.serve.batch import reporting
from urpo_kit.serve.settings import JudgeSettings, load_backend
from urpo_kit.sources.files import iter_file

ROOT = Path(__file__).resolve().parent.parent
console = Console()


@contextmanager
def progress(backend: HFBackend, label: str, total: int) -> Iterator[None]:
    """A transient bar advanced per generation batch."""
    with Progress(*Progress.get_default_columns(), console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        with reporting(backend, lambda k: bar.advance(task, k)):
            yield


def answer_groups(backend: HFBackend, path: Path, prompts: int, group: int, sampling: SamplingParams,
                  seed: int) -> list[RowInput]:
    """The model's own answers to the shipped instructions, G per prompt, generated once into `path`."""
    if path.exists():
        cached = [JudgeRow.model_validate_json(line).input for line in path.read_text().splitlines()]
        if len(cached) >= prompts:
            return cached[:prompts]
    import torch

    task = prepare_task(ROOT / "tasks" / "instructions-offline.yaml", limit=prompts)
    episodes = [task.task.episode(row, row_number=n) for row, n in zip(task.rows.rows, task.rows.row_numbers)]
    torch.manual_seed(seed)
    start = time.perf_counter()
    with progress(backend, "answers", len(episodes) * group):
        texts = backend.generate([e.messages for e in episodes for _ in range(group)], sampling)
    console.print(f"generated {len(texts)} answers in {time.perf_counter() - start:.0f} s")
    groups = [RowInput(e.payload.instruction, texts[i * group:(i + 1) * group]) for i, e in enumerate(episodes)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": g.prompt, "responses": g.responses}) + "\n" for g in groups))
    return groups


VERDICTS: tuple[VerdictKind, ...] = ("sample", "likelihood")
LIKELIHOOD_SCORE_PREFILL = "Score: "  # trailing space: the score digit is then one token (see the docstring)


def verdict_settings(settings: JudgeSettings, verdict: VerdictKind, mode: Mode, prefill: bool) -> JudgeSettings:
    """The settings of one (verdict, mode) run: `--prefill` sampled replies start at the verdict line; likelihood
    reads right after it (the default prefill by mode, pointwise `Score: `)."""
    if verdict == "likelihood":
        return settings.model_copy(update={"verdict": verdict,
                                           "prefill": LIKELIHOOD_SCORE_PREFILL if mode == "pointwise" else None})
    return settings.model_copy(update={"prefill": MODES[mode].prefill}) if prefill else settings


def timed(backend: HFBackend, settings: JudgeSettings, mode: Mode, rows: list[RowInput], label: str,
          out: Path) -> tuple[list[Verdict], float]:
    """All rows in one `Judge.judge` call, as `urpo-kit judge` and the trainer batch them; wall time. The
    judgments go to `out/judgments-LABEL-VERDICT-MODE.jsonl`, to see why parses fail or what was read."""
    judge = settings.judge(backend, mode, responses=max(len(r.responses) for r in rows))
    with progress(backend, f"{label}, {judge.verdict}, {mode}", sum(judge.judgments(len(r.responses)) for r in rows)):
        start = time.perf_counter()
        verdicts = judge.judge([judge_item(row, row_key(row)) for row in rows])
        seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    records = [to_result(row, v, judge.verdict).model_dump_json() + "\n" for row, v in zip(rows, verdicts)]
    (out / f"judgments-{label}-{judge.verdict}-{mode}.jsonl").write_text("".join(records))
    return verdicts, seconds


def parse_rate(verdicts: list[Verdict]) -> float:
    return sum(v.parsed for v in verdicts) / max(sum(v.attempts for v in verdicts), 1)


def first_shown_rate(verdicts: list[Verdict]) -> float | None:
    """Share of parsed judgments that put the candidate shown first on top: 0.5 is no position bias, 1.0 is a
    referee that always names the first label."""
    firsts = [p[0] == shown[0] for v in verdicts for shown, p in zip(v.shown, v.parses) if isinstance(p, list)]
    return sum(firsts) / len(firsts) if firsts else None


def agreement(listwise: list[Verdict], pointwise: list[Verdict]) -> dict[str, Any]:
    """Kendall over the pairs pointwise decides, and fractional top-1, on groups both modes parsed."""
    both = [(lw, pw) for lw, pw in zip(listwise, pointwise) if lw.ok and pw.ok]
    agree = decided = pairs = 0
    for lw, pw in both:
        position = {c: r for r, c in enumerate(lw.ranking or [])}
        for a, b in itertools.combinations(range(len(pw.scores)), 2):
            pairs += 1
            if pw.scores[a] != pw.scores[b]:
                decided += 1
                agree += (position[a] < position[b]) == (pw.scores[a] > pw.scores[b])
    top1 = [gold_credit(pw, lw.ranking[0]) for lw, pw in both if lw.ranking]
    return {"groups_compared": len(both), "kendall": agree / decided if decided else None,
            "pointwise_tied_pairs": 1 - decided / pairs if pairs else None,
            "top1": sum(top1) / len(top1) if top1 else None}


def hh_pairs(path: Path, n: int) -> list[RowInput]:
    rows = []
    for _, raw, _ in iter_file(path):
        if raw is not None:
            rows.append(JudgeRow.model_validate(raw).input)
        if len(rows) == n:
            break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generation batch")
    parser.add_argument("--prompts", type=int, default=24, help="instructions (groups) to judge")
    parser.add_argument("--group", type=int, default=4, help="answers per instruction")
    parser.add_argument("--answer-tokens", type=int, default=96)
    parser.add_argument("--pairs", type=int, default=100, help="hh-rlhf pairs (0: skip)")
    parser.add_argument("--hh", type=Path, default=ROOT.parent / "shared/data/hh-rlhf/harmless-base-test.jsonl.gz")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="tokens per judgment")
    parser.add_argument("--debias", default="shuffle", choices=["none", "shuffle", "both_orders"],
                        help="presentation order of the groups")
    parser.add_argument("--pair-debias", default="both_orders", choices=["none", "shuffle", "both_orders"],
                        help="presentation order of the hh-rlhf pairs (both orders cancel a position bias)")
    parser.add_argument("--verdicts", nargs="+", default=list(VERDICTS), choices=VERDICTS)
    parser.add_argument("--scale", nargs=2, type=int, default=[1, 9], metavar=("LOW", "HIGH"),
                        help="pointwise score range, both verdicts")
    parser.add_argument("--prefill", action="store_true", help="start sampled replies with the verdict line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="default: runs/bench-judge, or runs/bench-judge-prefill")
    args = parser.parse_args()
    args.out = args.out or ROOT / "runs" / ("bench-judge-prefill" if args.prefill else "bench-judge")

    settings = JudgeSettings(debias=args.debias, seed=args.seed, scale=tuple(args.scale),
                             sampling=Sampling(temperature=0.0, max_new_tokens=args.max_new_tokens))
    start = time.perf_counter()
    backend = load_backend(args.model, dtype=args.dtype, batch_size=args.batch_size, threads=args.threads)
    console.print(f"loaded {args.model} ({args.dtype}) in {time.perf_counter() - start:.1f} s")
    backend.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(0.0, 1.0, 4))  # one-time costs, untimed
    report = Report(args.out / "bench.json", {"settings": {k: str(v) for k, v in vars(args).items()}})
    if args.prompts:
        bench_groups(args, backend, settings, report)
    if args.pairs and args.hh.is_file():
        bench_hh(args, backend, settings.model_copy(update={"debias": args.pair_debias}), report)
    else:
        console.print(f"hh-rlhf pairs skipped ({args.hh} absent or --pairs 0)")
    console.print(report.table)


class Report:
    """Figures printed and saved as soon as they are measured, so that a slow run interrupted keeps what it has."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path, self.data = path, dict(header)
        self.table = Table("benchmark", "verdict", "mode", "items", "s / item", "parse rate", "accuracy / agreement")

    def add(self, key: str, values: dict[str, Any], row: tuple[str, ...]) -> None:
        self.data[key] = values
        self.table.add_row(*row)
        console.print(" | ".join(row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2))


def bench_groups(args: argparse.Namespace, backend: HFBackend, settings: JudgeSettings, report: Report) -> None:
    slug = args.model.replace(":", "-").replace("/", "-")
    # shared by runs with and without --prefill, so that both judge the same answers
    answers = args.out.parent / "bench-judge-answers" / f"{slug}-g{args.group}-t{args.answer_tokens}-s{args.seed}.jsonl"
    groups = answer_groups(backend, answers, args.prompts, args.group,
                           SamplingParams(temperature=0.8, top_p=0.95, max_new_tokens=args.answer_tokens), args.seed)
    seconds: dict[tuple[VerdictKind, Mode], float] = {}
    for verdict in args.verdicts:
        results = {}
        for mode in ("listwise", "pointwise"):
            run = verdict_settings(settings, verdict, mode, args.prefill)
            results[mode], seconds[verdict, mode] = timed(backend, run, mode, groups, "instructions", args.out)
            per_group, rate = seconds[verdict, mode] / len(groups), parse_rate(results[mode])
            report.add(f"groups_{verdict}_{mode}", {"groups": len(groups), "seconds": seconds[verdict, mode],
                                                    "parse_rate": rate, "seconds_per_group": per_group},
                       (f"instructions, G={args.group}", verdict, mode, str(len(groups)), f"{per_group:.2f}",
                        f"{rate:.2f}", ""))
        speedup = seconds[verdict, "pointwise"] / seconds[verdict, "listwise"]
        a = agreement(results["listwise"], results["pointwise"]) | {"speedup": speedup}
        report.add(f"groups_{verdict}_agreement", a,
                   ("", verdict, "listwise vs pointwise", str(a["groups_compared"]),
                    f"listwise x{speedup:.2f} faster (target >= 3)", "",
                    f"kendall {_fmt(a['kendall'])}, top-1 {_fmt(a['top1'])}, "
                    f"pointwise tied pairs {_fmt(a['pointwise_tied_pairs'])}"))
    compare_verdicts(report, "groups", seconds)


def bench_hh(args: argparse.Namespace, backend: HFBackend, settings: JudgeSettings, report: Report) -> None:
    pairs = hh_pairs(args.hh, args.pairs)
    seconds: dict[tuple[VerdictKind, Mode], float] = {}
    for verdict in args.verdicts:
        for mode in ("pairwise", "pointwise"):
            run = verdict_settings(settings, verdict, mode, args.prefill)
            verdicts, seconds[verdict, mode] = timed(backend, run, mode, pairs, "hh-rlhf", args.out)
            accuracy = sum(gold_credit(v, 0) for v in verdicts) / len(verdicts)
            ties = sum(v.scores[0] == v.scores[1] for v in verdicts) / len(verdicts)
            rate, first = parse_rate(verdicts), first_shown_rate(verdicts) if mode == "pairwise" else None
            per_pair = seconds[verdict, mode] / len(pairs)
            figures = f"accuracy {accuracy:.3f} (ties {ties:.2f})"
            if first is not None:
                figures += f", first shown won {first:.2f}"
            report.add(f"hh_{verdict}_{mode}", {"pairs": len(pairs), "seconds": seconds[verdict, mode],
                                                "seconds_per_pair": per_pair, "accuracy": accuracy,
                                                "tie_rate": ties, "parse_rate": rate, "first_shown_rate": first},
                       ("hh-rlhf harmless", verdict, mode, str(len(pairs)), f"{per_pair:.2f}", f"{rate:.2f}", figures))
    compare_verdicts(report, "hh", seconds)


def compare_verdicts(report: Report, key: str, seconds: dict[tuple[VerdictKind, Mode], float]) -> None:
    """Likelihood's speed-up over sampling, per mode, when both verdicts ran."""
    for mode in sorted({m for _, m in seconds}):
        if ("sample", mode) in seconds and ("likelihood", mode) in seconds:
            ratio = seconds["sample", mode] / seconds["likelihood", mode]
            report.add(f"{key}_{mode}_likelihood_speedup", {"speedup": ratio},
                       ("", "likelihood vs sample", mode, "", f"likelihood x{ratio:.1f} faster", "", ""))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"

if __name__ == "__main__":
    main()
