"""Referee output parsing (rankings, scores, pairwise choices), ranking scores, and ranks turned into rewards.

Referees reason before they answer, so parsing looks for the *last* ranking, and prefers what follows a marker such
as `Ranking:` / `Final ranking:` over numbers that happen to appear in the reasoning. Parsers never raise on model
output: they return `None`, which the reward layer counts as a failed parse.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from functools import lru_cache

# ranking score -> what it gives (for messages and the generated reference); `score_ranking` computes them
SCORE_METHODS = {
    "exact": "1 when the whole ranking equals the gold order, else 0 (for two candidates: choice accuracy)",
    "top1": "1 when the best gold candidate is ranked first, else 0",
    "kendall": "Kendall's tau with the gold order mapped to [0, 1] by (tau + 1) / 2",
    "pairwise": "the share of candidate pairs ordered as in the gold order (equal to `kendall` on total orders)",
}

# A colon is required after common words ("answer", "order") so that prose like "its answer is 1" is no marker.
_MARKER = re.compile(
    r"\b(?:final\s+)?(?:(?:ranking|ranked\s+order|order(?:ing)?|answer|verdict|choice|preference|winner|"
    r"better\s+(?:response|answer|candidate))\s*(?:is\s*)?[:：=]|(?:ranking|verdict)\s+is\b)",
    re.IGNORECASE,
)
_PREFIX = r"(?:(?:response|candidate|answer|output|assistant|option)\s*#?\s*)?"
# an explicit separator, or plain spacing before a bracketed label ("[2] [1] [3]", "[2][1][3]")
_SEP = r"(?:\s*(?:>>?|≻|→|->|=>|,|;)\s*|\s*(?=[\[(]))"
_ENUM = r"^\s*(?:\d+\s*[.)]|[-*•])\s*"  # a numbered or bulleted list item: "1. [2]", "- B"


def _token(core: str, *, capture: bool) -> str:
    """One label as written: `[2]`, `(2)`, `2`, optionally after "Response"; a bare one must stand alone (not `2.5`)."""
    label = f"({core})" if capture else f"(?:{core})"
    return rf"{_PREFIX}(?:\[\s*{label}\s*\]|\(\s*{label}\s*\)|(?<![\w.]){label}(?![\w]|\.\d))"


@lru_cache(maxsize=64)
def _patterns(labels: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Token, sequence and list-item patterns for one label set.

    Tokens are generic for the label kind (any small number for numeric labels, any letter for letter labels) so that
    an out-of-range label such as `4` with three candidates is seen, and rejected, instead of silently skipped.
    """
    if all(label.isdigit() for label in labels):
        core = r"\d{1,3}"
    elif all(len(label) == 1 and label.isalpha() for label in labels):
        core = r"[A-Za-z]"
    else:
        core = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    tok = re.compile(_token(core, capture=True), re.IGNORECASE)
    token = _token(core, capture=False)
    seq = re.compile(rf"{token}(?:{_SEP}{token})*", re.IGNORECASE)
    item = re.compile(rf"{_ENUM}({token})", re.IGNORECASE)
    return tok, seq, item


def _clean(text: str) -> str:
    # markdown emphasis and code spans carry no meaning for a ranking
    return re.sub(r"\*\*|__|`", "", text)


def _labels_in(span: str, tok: re.Pattern[str]) -> list[str]:
    return [next(g for g in m.groups() if g is not None).upper() for m in tok.finditer(span)]


def _after_marker(segment: str, labels: tuple[str, ...]) -> list[str] | None:
    """Labels right after a marker: a sequence on the marker's line, else a list of items, else the next sequence."""
    tok, seq, item = _patterns(labels)
    first_line, _, rest = segment.partition("\n")
    if m := seq.search(first_line):
        return _labels_in(m.group(0), tok)
    listed: list[str] = []
    for line in rest.splitlines():
        if m := item.match(line):
            listed += _labels_in(m.group(1), tok)
        elif listed or line.strip():
            break
    if listed:
        return listed
    if m := seq.search(rest):
        return _labels_in(m.group(0), tok)
    return None


def _find_labels(text: str, labels: tuple[str, ...]) -> list[str] | None:
    """The raw label sequence a referee committed to (unvalidated): after the last useful marker, else the last one.

    Without a marker a single label counts only in brackets (`[2]`), since a bare number in prose is rarely a verdict.
    """
    text = _clean(text)
    end = len(text)
    for marker in reversed(list(_MARKER.finditer(text))):
        # up to the next marker only: anything beyond it was already searched, and this keeps the scan linear
        found = _after_marker(text[marker.end():end], labels)
        if found:
            return found
        end = marker.start()
    tok, seq, _ = _patterns(labels)
    for m in reversed(list(seq.finditer(text))):
        found = _labels_in(m.group(0), tok)
        if len(found) > 1 or re.search(r"[\[(]", m.group(0)):
            return found
    return None


def _to_indices(found: list[str], labels: Sequence[str]) -> list[int] | None:
    index = {label.upper(): i for i, label in enumerate(labels)}
    if any(f not in index for f in found) or len(set(found)) != len(found):
        return None
    return [index[f] for f in found]


def parse_ranking(text: str, labels: Sequence[str]) -> list[int] | None:
    """Indices into `labels`, best first, from the last ranking in `text`; `None` unless it is a permutation.

    A repeated label, an unknown label or fewer than N-1 labels is a failed parse. Exactly N-1 distinct labels are
    accepted and the missing one is put last, since naming all but the worst is a complete ordering (for N=2 a lone
    `[2]` means "2 is better").
    """
    labels = tuple(str(label).strip() for label in labels)
    found = _find_labels(text, labels)
    if found is None:
        return None
    idx = _to_indices(found, labels)
    if idx is None or len(idx) < len(labels) - 1:
        return None
    return idx + [i for i in range(len(labels)) if i not in idx]


def parse_verdict(reply: str, labels: Sequence[str], prefill: str = "") -> list[int] | None:
    """The ranking a referee reply gives, read where the reply puts it. With a prefill (a verdict-first reply such as
    `Ranking: [` + `2] > [1]`), the verdict is the reply's first line, whatever the model writes after it (a small
    model sampled at temperature 1 often rambles on, and may write other label sequences); a first line without a
    ranking falls back to the whole reply. Without a prefill, the last ranking of the reply counts (`parse_ranking`).
    """
    text = prefill + reply
    if prefill:
        first = parse_ranking(text.split("\n", 1)[0], labels)
        if first is not None:
            return first
    return parse_ranking(text, labels)


def parse_choice(text: str, labels: Sequence[str] = ("1", "2")) -> int | None:
    """Index of the label a pairwise (or pick-one) verdict chose: a lone label, or the top of a full ranking."""
    labels = tuple(str(label).strip() for label in labels)
    found = _find_labels(text, labels)
    if found is not None and len(found) == 1:
        idx = _to_indices(found, labels)
        return idx[0] if idx else None
    ranking = parse_ranking(text, labels)
    return ranking[0] if ranking else None


_SCORE = re.compile(
    r"(?:\b(?:score|rating|grade)\b\s*(?:is\b)?\s*[:=]?\s*\(?\s*(?P<a>-?\d+(?:\.\d+)?)(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"|\[\[\s*(?P<b>-?\d+(?:\.\d+)?)\s*\]\]"
    r"|(?<![\w.])(?P<c>-?\d+(?:\.\d+)?)\s*/\s*\d+(?:\.\d+)?(?![\w.])"
    r"|\*\*\s*(?P<d>-?\d+(?:\.\d+)?)\s*\*\*)",
    re.IGNORECASE,
)


def parse_score(text: str, lo: float = 1, hi: float = 10) -> float | None:
    """A pointwise score (`Score: 7`, `Score: (7)`, `7/10`, `**8**`, `[[8]]`, or a bare number as the whole text); the
    last wins.

    Out of [lo, hi] is a failed parse rather than clipped: a referee that writes 12 did not follow the scale.
    """
    matches = list(_SCORE.finditer(text))
    if matches:
        m = matches[-1]
        value = float(next(v for v in m.group("a", "b", "c", "d") if v is not None))
    elif re.fullmatch(r"\s*-?\d+(?:\.\d+)?\s*\.?\s*", text):
        value = float(text.strip().rstrip("."))
    else:
        return None
    return value if lo <= value <= hi else None


# --------------------------------------------------------------------------------------------- scoring
def _check_permutation(order: Sequence[int], n: int, what: str) -> None:
    if sorted(order) != list(range(n)):
        raise ValueError(f"{what} {list(order)!r} is not a permutation of range({n})")


def score_ranking(pred: Sequence[int] | None, gold: Sequence[int], method: str) -> float:
    """Agreement of a parsed ranking with the gold ranking (both best first), in [0, 1]; a failed parse scores 0.

    `kendall` is Kendall's tau mapped to [0, 1] by (tau + 1) / 2; on strict total orders that equals `pairwise`, the
    share of candidate pairs ordered as in gold. Both names are kept because task files use either vocabulary.
    """
    if method not in SCORE_METHODS:
        raise ValueError(f"unknown ranking score `{method}`; valid: {', '.join(SCORE_METHODS)}")
    n = len(gold)
    _check_permutation(gold, n, "gold ranking")
    if pred is None:
        return 0.0
    _check_permutation(pred, n, "predicted ranking")
    if method == "exact":
        return float(list(pred) == list(gold))
    if method == "top1":
        return float(pred[0] == gold[0])
    if n < 2:
        return 1.0
    pos = {c: r for r, c in enumerate(pred)}
    agree = sum(pos[gold[i]] < pos[gold[j]] for i in range(n) for j in range(i + 1, n))
    return agree / (n * (n - 1) // 2)  # = (tau + 1) / 2, as tau = (agree - disagree) / pairs


def rank_to_rewards(ranking: Sequence[int], g: int) -> list[float]:
    """Rewards in candidate order: the candidate at rank r (1-based) of G gets (G - r) / (G - 1), best 1, worst 0."""
    if g < 2:
        raise ValueError(f"a group needs at least 2 candidates to rank, got {g}")
    _check_permutation(ranking, g, "ranking")
    rewards = [0.0] * g
    for r, candidate in enumerate(ranking, start=1):
        rewards[candidate] = (g - r) / (g - 1)
    return rewards


def average_rank_rewards(rankings: list[list[int] | None], g: int) -> tuple[list[float], int]:
    """Mean rank rewards over K referee samples, skipping failed parses; returns (rewards, number of failures).

    When every sample failed the group gets 0.5 each: equal rewards carry no signal after GRPO's group normalisation,
    which is the honest outcome of a referee that said nothing usable.
    """
    parsed = [r for r in rankings if r is not None]
    failures = len(rankings) - len(parsed)
    if not parsed:
        return [0.5] * g, failures
    per_sample = [rank_to_rewards(r, g) for r in parsed]
    return [sum(col) / len(per_sample) for col in zip(*per_sample)], failures


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation with tie-averaged ranks; None when either side is constant (undefined)."""
    if len(x) != len(y) or len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return cov / math.sqrt(vx * vy)
