"""The referee side of `urpo-kit eval`: does the model, as referee, pick the better response?

Data: RewardBench-format rows (`prompt`, `chosen`, `rejected`, optional `subset`; `chosen`/`rejected` may be lists
of texts, as in RewardBench 2), hh-rlhf transcripts (`chosen`/`rejected` are whole `\\n\\nHuman: ... \\n\\nAssistant:
...` dialogues; the prompt is their shared prefix up to the last `\\n\\nAssistant:`), both read by `urpo-kit judge`'s
row model, or one of our preference tasks (its gold order, and the referee prompt it trains with).

Scoring (RewardBench's generative-judge protocol, extended):
- order `random`: each item is shown once, in an order drawn from `numpy.random.RandomState(seed)` item by item, as
  RewardBench does: for a pair `rand() > 0.5` swaps the two; for N candidates `randint(0, N)` is the position the
  best one is swapped to (RewardBench 2). A win scores 1, a loss 0.
- order `both_orders`: the item is also shown in the reverse order; it scores 1 only when both judgments pick the
  best, 0 when both pick the same other response, and 1/N otherwise. The position-consistency rate is the share of
  items, among those where both judgments parsed, whose two judgments picked the same response.
- an unparseable judgment scores 1/N (0.5 for a pair: a tie, as in RewardBench) and is counted separately.
- sections (RewardBench v1, `calculate_scores_per_section`): section = sum(acc_s * EXAMPLE_COUNTS[s]) /
  sum(EXAMPLE_COUNTS[s]) over the section's subsets present; the score is the mean of the sections present.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from urpo_kit.compiler import prepare_task
from urpo_kit.config.loader import folder_of
from urpo_kit.config.refs import written_overrides
from urpo_kit.config.schema import RefereeSpec, Source
from urpo_kit.config.suite import RefereeBenchmark
from urpo_kit.errors import SourceError, UrpoError
from urpo_kit.kinds import Preference
from urpo_kit.referee import Judge, JudgeItem, SamplingParams
from urpo_kit.referee.backends import Backend
from urpo_kit.referee.rows import JudgeRow, validation_message
from urpo_kit.rewards import score_ranking
from urpo_kit.sources import SkippedRow, describe_source, load_rows

__all__ = ["EXAMPLE_COUNTS", "SUBSET_MAPPING", "PreferenceItem", "PreferenceSet", "RefereeResult",
           "load_preference_set", "presentation_orders", "run_referee_benchmark", "section_scores"]

# RewardBench v1 (allenai/reward-bench, rewardbench/constants.py): the prompt counts each subset is weighted by.
# math-prm is up-weighted from its 447 rows to match the code subsets; the two xstest weights are as written there.
EXAMPLE_COUNTS: dict[str, int] = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "math-prm": 984, "refusals-dangerous": 100, "refusals-offensive": 100,
    "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46, "xstest-should-refuse": 250, "xstest-should-respond": 154, "donotanswer": 136,
    "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}
SUBSET_MAPPING: dict[str, list[str]] = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}


@dataclass(frozen=True)
class PreferenceItem:
    """A prompt and its candidates, best first (index 0 is the response the referee should pick)."""

    prompt: str
    candidates: list[str]
    subset: str
    row: int


@dataclass
class PreferenceSet:
    """The items of one referee benchmark, what was left out and why, and the referee prompt to judge them with."""

    items: list[PreferenceItem]
    skipped: list[SkippedRow]
    description: str
    referee: RefereeSpec
    base_dir: Path | None
    score: str = "exact"  # a preference task's ranking score, reported as `reward` (the training reward's term)

    def sha256(self) -> str:
        """Hash of exactly what was judged, for results.json."""
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(json.dumps([item.prompt, item.candidates, item.subset], ensure_ascii=False).encode())
        return digest.hexdigest()


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _row_candidates(row: dict[str, Any]) -> tuple[str, list[str]]:
    """(prompt, candidates best first) of one row, or ValueError saying why the row cannot be used.

    Pairs (RewardBench `prompt`/`chosen`/`rejected`, hh-rlhf transcripts, chat message lists) are read exactly as
    `urpo-kit judge` reads them; lists of texts (RewardBench 2: one chosen, several rejected) become N candidates.
    """
    try:
        if _is_text_list(row.get("chosen")) and _is_text_list(row.get("rejected")):
            if len(row["chosen"]) > 1:
                raise ValueError("several chosen responses (RewardBench 2 Ties) are not scored here")
            parsed = JudgeRow(prompt=row.get("prompt"), responses=row["chosen"] + row["rejected"]).input
        else:
            parsed = JudgeRow.model_validate(row).input
            if parsed.gold is None:
                raise ValueError("no `chosen`/`rejected`: the better response is unknown")
    except ValidationError as e:
        raise ValueError(validation_message(e)) from None
    return parsed.prompt, parsed.responses


def _finish(candidates: list[str], n_way: int | None) -> list[str]:
    if n_way is not None:
        if len(candidates) < n_way:
            raise ValueError(f"{len(candidates)} candidates, best-of-{n_way} needs {n_way}")
        candidates = candidates[:n_way]
    if len(set(candidates)) != len(candidates):
        raise ValueError("two candidates are identical, so the better one is undefined")
    return candidates


def _limited(source: Source, limit: int | None) -> Source:
    if limit is None:
        return source
    return source.model_copy(update={"limit": min(limit, source.limit or limit)})


def load_preference_set(bench: RefereeBenchmark, *, name: str, limit: int | None, suite_dir: Path | None,
                        allow_code: bool = False) -> PreferenceSet:
    """The items of a referee benchmark: rows read through our sources (a preference task through the compiler).

    Rows that cannot be judged (malformed, identical candidates, too few for best-of-N) are skipped and counted.
    """
    items: list[PreferenceItem] = []
    skipped: list[SkippedRow] = []

    def add(number: int, row: dict[str, Any], prompt: str, candidates: list[str]) -> None:
        try:
            items.append(PreferenceItem(prompt, _finish(candidates, bench.candidates), str(row.get("subset", name)),
                                        number))
        except ValueError as e:
            skipped.append(SkippedRow(number, str(e)))

    if bench.task is not None:
        prepared = prepare_task(bench.task, written_overrides(bench), allow_code=allow_code, limit=limit)
        task, loaded = prepared.task, prepared.rows
        if not isinstance(task, Preference):
            raise UrpoError(f"{bench.task}: a referee benchmark needs a preference task, not {task.kind}")
        spec = task.spec
        for row, number in zip(loaded.rows, loaded.row_numbers):
            variables = task.variables(row, number)
            add(number, row, task.question_text(variables, number), task.ranked_candidates(variables, number))
        description, score = str(bench.task), spec.score
        referee, base_dir = (bench.referee, suite_dir) if bench.referee else (spec.referee, folder_of(spec))
    else:
        assert bench.source is not None  # the schema guarantees exactly one of task and source
        source = _limited(bench.source, limit)
        loaded = load_rows(source, base_dir=suite_dir, allow_code=allow_code)
        for row, number in zip(loaded.rows, loaded.row_numbers):
            try:
                add(number, row, *_row_candidates(row))
            except ValueError as e:
                skipped.append(SkippedRow(number, str(e)))
        description, score = describe_source(source), "exact"
        referee, base_dir = bench.referee or RefereeSpec(), suite_dir
    if not items:
        reasons = "; ".join(f"row {s.row_number}: {s.reason}" for s in skipped[:3])
        raise SourceError(f"{description}: no usable preference rows ({reasons})")
    return PreferenceSet(items, loaded.skipped + skipped, description, referee, base_dir, score)


def presentation_orders(items: Sequence[PreferenceItem], seed: int) -> list[list[int]]:
    """Per item, the candidate (index into `candidates`) shown at each position, drawn as RewardBench draws it."""
    import numpy as np

    rng = np.random.RandomState(seed)
    orders = []
    for item in items:
        order = list(range(len(item.candidates)))
        if len(order) == 2:
            if rng.rand() > 0.5:
                order.reverse()
        else:
            swap = int(rng.randint(0, len(order)))
            order[0], order[swap] = order[swap], order[0]
        orders.append(order)
    return orders


@dataclass
class Judgment:
    """One referee call: what was shown, what came back, and the candidate it put first (None: unparseable)."""

    shown: list[int]
    raw: list[str]             # the judgment texts (one; pairwise mode: one per pair of candidates)
    ranking: list[int] | None  # candidate indices (best first = 0), as the referee ranked them
    scores: list[float] | None = None  # verdict likelihood: the Judge's probability score per candidate index

    @property
    def top(self) -> int | None:
        return None if self.ranking is None else self.ranking[0]


@dataclass
class RefereeResult:
    """Everything measured on one referee benchmark; `metrics` are the headline numbers (see the module docstring)."""

    metrics: dict[str, float]
    subsets: dict[str, dict[str, float]]
    sections: dict[str, float]
    log: list[dict[str, Any]] = field(default_factory=list)


def _item_score(judgments: list[Judgment], n: int) -> tuple[float, bool | None]:
    """(score, consistent). Sampled verdicts: one judgment wins or loses; two must agree (consistent is None unless
    both parsed). Likelihood verdicts: the probabilities are averaged over the orders and the best must have the
    highest (a tie scores 1/N): a position bias that lifts whichever response is shown first cancels out."""
    tops = [j.top for j in judgments]
    consistent = tops[0] == tops[1] if len(tops) == 2 and None not in tops else None
    if all(j.scores is not None for j in judgments):
        mean = [sum(j.scores[i] for j in judgments) / len(judgments) for i in range(n)]  # type: ignore[index]
        leaders = [i for i, p in enumerate(mean) if math.isclose(p, max(mean), rel_tol=1e-9, abs_tol=1e-12)]
        return (1.0 / n if len(leaders) > 1 else float(leaders[0] == 0)), consistent
    if len(tops) == 1:
        return (1.0 / n if tops[0] is None else float(tops[0] == 0)), None
    if None in tops:
        return 1.0 / n, None
    return (float(tops[0] == 0) if consistent else 1.0 / n), consistent


def section_scores(subset_accuracy: dict[str, float]) -> dict[str, float]:
    """RewardBench v1 section scores for the subsets present, and `score`, their mean (empty if none is present)."""
    sections = {}
    for section, subsets in SUBSET_MAPPING.items():
        present = [s for s in subsets if s in subset_accuracy]
        if present:
            weight = sum(EXAMPLE_COUNTS[s] for s in present)
            sections[section] = sum(subset_accuracy[s] * EXAMPLE_COUNTS[s] for s in present) / weight
    if sections:
        sections["score"] = sum(sections.values()) / len(sections)
    return sections


def _mean(values: Sequence[float]) -> float | None:
    """None when there is nothing to average (e.g. no judgment parsed): such a metric is left out, not NaN."""
    return sum(values) / len(values) if values else None


def run_referee_benchmark(data: PreferenceSet, backend: Backend, *, order: str, sampling: SamplingParams,
                          seed: int) -> RefereeResult:
    """Judge every item (all judgments in one batched backend call) and score them."""
    first = presentation_orders(data.items, seed)
    orders = [[o, o[::-1]] if order == "both_orders" else [o] for o in first]
    # the benchmark sets the presentation orders itself (`order`), so each judgment is shown as given
    judge = Judge(backend, data.referee.model_copy(update={"debias": "none"}), sampling=sampling,
                  base_dir=data.base_dir, seed=seed)
    requests = [JudgeItem(item.prompt, [item.candidates[i] for i in shown], key=str(item.row))
                for item, shown_list in zip(data.items, orders) for shown in shown_list]
    verdicts = iter(judge.judge(requests))
    scores, consistent, random_order, rewards, by_subset = [], [], [], [], {}
    first_position: list[float] = []
    best_probability: list[float] = []
    failures = judgments_made = 0
    log = []
    likelihood = judge.verdict == "likelihood"
    for item, shown_list in zip(data.items, orders):
        n = len(item.candidates)
        judgments = []
        for shown in shown_list:
            verdict = next(verdicts)
            ranking = None if verdict.ranking is None else [shown[i] for i in verdict.ranking]
            probabilities = None
            if likelihood:  # back from shown positions to candidate indices
                probabilities = [0.0] * n
                for position, candidate in enumerate(shown):
                    probabilities[candidate] = verdict.scores[position]
            judgments.append(Judgment(shown, verdict.raw, ranking, probabilities))
        score, agreed = _item_score(judgments, n)
        scores.append(score)
        by_subset.setdefault(item.subset, []).append(score)
        random_order.append(_item_score(judgments[:1], n)[0])
        if agreed is not None:
            consistent.append(float(agreed))
        for j in judgments:
            judgments_made += 1
            failures += j.ranking is None
            rewards.append(score_ranking(j.ranking, list(range(n)), data.score))
            if j.ranking is not None:
                first_position.append(float(j.top == j.shown[0]))
        if likelihood:
            best_probability.append(sum(j.scores[0] for j in judgments) / len(judgments))  # type: ignore[index]
        log.append({"row": item.row, "subset": item.subset, "n": n, "score": score, "consistent": agreed,
                    "judgments": [{"shown": j.shown, "ranking": j.ranking, "raw": j.raw, "probabilities": j.scores}
                                  for j in judgments]})
    metrics = {
        "accuracy": _mean(scores),
        "n": float(len(scores)),
        "parse_failures": float(failures),
        "parse_failure_rate": failures / judgments_made,
        "first_position": _mean(first_position),
        "reward": _mean(rewards),
        "best_probability": _mean(best_probability),
    }
    if order == "both_orders":
        metrics.update(consistency=_mean(consistent), random_order_accuracy=_mean(random_order))
    subsets = {s: {"accuracy": sum(v) / len(v), "n": float(len(v))} for s, v in sorted(by_subset.items())}
    return RefereeResult({k: v for k, v in metrics.items() if v is not None}, subsets,
                         section_scores({s: v["accuracy"] for s, v in subsets.items()}), log)
