"""Rewards: extraction, verifiers, referee parsing, ranking scores, aggregation. Pure functions, no model."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urpo_kit.config.schema import LengthPenalty, RewardSpec
from urpo_kit.errors import CodeNotAllowed
from urpo_kit.plugins import resolve_callable
from urpo_kit.rewards import (
    average_rank_rewards,
    choice_letter,
    combine,
    extract_answer,
    extractor,
    get_verifier,
    parse_choice,
    parse_number,
    parse_ranking,
    parse_score,
    rank_to_rewards,
    score_ranking,
)


def half_credit(predicted: str, gold: str) -> float:
    """A user verifier, reached by dotted path through this module's own import name."""
    return 0.5 if predicted == gold else 0.0


def bad_verifier(predicted: str, gold: str) -> float:
    return 3.0


# --------------------------------------------------------------------------------------------- extraction
@pytest.mark.parametrize(
    ("text", "how", "expected"),
    [
        (r"so the answer is \boxed{\frac{1}{2}}.", "boxed", r"\frac{1}{2}"),
        (r"\boxed{1} then \boxed{ 2 }", "boxed", "2"),
        (r"\boxed{a} \fbox{b{c}}", "boxed", "b{c}"),
        (r"\boxed{\{1, 2\}}", "boxed", r"\{1, 2\}"),
        (r"\boxed{3} and a truncated \boxed{4", "boxed", "3"),
        ("no box at all: 42", "boxed", None),
        (r"\boxed{}", "boxed", None),
        ("it costs $1,234.50 in total", "last_number", "1234.50"),
        ("from 5 down to -3", "last_number", "-3"),
        ("x-3", "last_number", "3"),
        ("1,000 apples", "last_number", "1000"),
        ("2.5 then 3/4 cup", "last_number", "3/4"),
        ("a list 1,2,3", "last_number", "3"),
        ("The answer is 42.", "last_number", "42"),
        ("no digits here", "last_number", None),
        ("<answer>a</answer> then <answer> b </answer>", "tag:answer", "b"),
        ("<answer>unclosed", "tag:answer", None),
        ("<Answer>1</answer> <answer>2</answer> stray </answer>", "tag:answer", "2"),
        ("<a>1</a> and a truncated <a>2", "tag:a", "1"),
        ("Answer: 12 ... Answer: 13", r"regex:Answer: (\d+)", "13"),
        ("x=1; x=2", r"regex:x=\d", "x=2"),
        ("  hi there \n", "full", "hi there"),
        ("   ", "full", None),
    ],
)
def test_extract_answer(text: str, how: str, expected: str | None) -> None:
    assert extract_answer(text, how) == expected


@pytest.mark.parametrize("how", ["boxd", "tag:", "tag:<b>", "regex:", "regex:(unclosed"])
def test_extractor_rejects(how: str) -> None:
    with pytest.raises(ValueError):
        extractor(how)
    with pytest.raises(ValueError):
        extract_answer("x", how)


def test_unknown_extract_lists_valid_methods() -> None:
    with pytest.raises(ValueError, match="boxed.*last_number.*tag:NAME"):
        extractor("bxoed")


# --------------------------------------------------------------------------------------------- verifiers
@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        (r"\frac{1}{2}", "0.5", 1.0),
        (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
        (r"-\dfrac{3}{4}", "-0.75", 1.0),
        (r"\frac12", "0.5", 1.0),
        ("1,000", "1000", 1.0),
        ("$1,234.50", "1234.5", 1.0),
        ("-3", "-3.0", 1.0),
        ("-3", "3", 0.0),
        ("3/4", "0.75", 1.0),
        ("50%", "0.5", 1.0),
        ("50\\%", "50", 1.0),
        ("12 cm", "12", 1.0),
        (r"12\text{ meters}", "12", 1.0),
        ("x = 5", "5", 1.0),
        (r"1.5 \times 10^{3}", "1500", 1.0),
        ("2 x 3", "2", 0.0),
        ("1, 2", "1", 0.0),
        ("5^2", "5", 0.0),
        ("1/0", "0", 0.0),
        ("seven", "7", 0.0),
        ("", "7", 0.0),
    ],
)
def test_numeric(pred: str, gold: str, expected: float) -> None:
    assert get_verifier("numeric")(pred, gold) == expected


def test_numeric_options() -> None:
    numeric = get_verifier("numeric")
    assert numeric("0.333", "1/3") == 0.0
    assert numeric("0.333", "1/3", rel_tol=1e-2) == 1.0
    assert numeric("50%", "0.5", percent=False) == 0.0
    assert numeric("1" + "0" * 400, "1e400") == 1.0  # exact Fractions: no float overflow
    assert parse_number("1e4000") is None  # exponents are capped at 3 digits, so no giant integers are built


def test_numeric_from_boxed_extraction() -> None:
    pred = extract_answer(r"Thus \boxed{\frac{1}{2}}", "boxed")
    assert pred is not None and get_verifier("numeric")(pred, "0.5") == 1.0


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        (r"\frac{2}{4}", "0.5", 1.0),
        (r"\frac{1}{2}", "0.5", 1.0),
        (r"\boxed{\frac{1}{2}}", "0.5", 1.0),
        ("x^2+2x+1", "(x+1)^2", 1.0),
        ("x^2+2x+2", "(x+1)^2", 0.0),
        ("1,000", "1000", 1.0),
        ("3", "4", 0.0),
        ("", "1", 0.0),
        (r"\frac{1}{", "0.5", 0.0),
        ("}}}{{{", "1", 0.0),
    ],
)
def test_math(pred: str, gold: str, expected: float) -> None:
    assert get_verifier("math")(pred, gold) == expected


def test_math_outside_main_thread() -> None:
    """math_verify's signal timeouts fail off the main thread; the verifier switches them off there."""
    out: list[float] = []
    worker = threading.Thread(target=lambda: out.append(get_verifier("math")(r"\frac{2}{4}", "0.5")))
    worker.start()
    worker.join()
    assert out == [1.0]


def test_exact() -> None:
    exact = get_verifier("exact")
    assert exact("  Paris\n", "paris") == 1.0
    assert exact("New   York", "new york") == 1.0
    assert exact("Paris", "paris", case_sensitive=True) == 0.0
    assert exact("Pariss", "Paris") == 0.0


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("[d]", "D"),
        ("**C**", "C"),
        (r"\boxed{A}", "A"),
        ("so the answer is b", "B"),
        ("The answer is (C) because it is largest", "C"),
        ("The answer is D since", "D"),
        ("Answer: option e.", "E"),
        ("B) 42", "B"),
        ("the answer is a number", None),
        ("I think so", None),
    ],
)
def test_choice_letter(text: str, letter: str | None) -> None:
    assert choice_letter(text) == letter


def test_choice_verifier() -> None:
    choice = get_verifier("choice")
    assert choice("answer is b", "(B)") == 1.0
    assert choice("(B)", "C") == 0.0
    assert choice("no idea", "A") == 0.0


def test_regex_verifier() -> None:
    regex = get_verifier("regex")
    assert regex(" 42 ", r"4\d") == 1.0
    assert regex("142", r"4\d") == 0.0  # fullmatch, not search
    assert regex("YES", "yes", ignore_case=True) == 1.0
    assert regex("anything", "(unclosed") == 0.0  # a bad gold pattern scores 0 rather than crash the run


def test_verifier_kwargs_are_checked() -> None:
    with pytest.raises(TypeError):
        get_verifier("exact")("a", "a", rel_tol=0.1)


def test_unknown_verifier_suggests() -> None:
    with pytest.raises(ValueError, match=r"did you mean `numeric`") as info:
        get_verifier("numerc")
    assert "exact" in str(info.value) and "math" in str(info.value)


def test_dotted_path_needs_allow_code() -> None:
    with pytest.raises(CodeNotAllowed, match=r"--allow-code.*allow_code: true"):
        get_verifier(f"{__name__}:half_credit")
    fn = get_verifier(f"{__name__}:half_credit", allow_code=True)
    assert fn("x", "x") == 0.5 and fn("x", "y") == 0.0
    with pytest.raises(ValueError, match="expected a bool or a float"):
        get_verifier(f"{__name__}:bad_verifier", allow_code=True)("x", "x")


def test_dotted_path_bool_result_is_float() -> None:
    fn = get_verifier("operator:eq", allow_code=True)
    assert fn("a", "a") == 1.0 and isinstance(fn("a", "a"), float)
    assert fn("a", "b") == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:fn", "cannot import module `no_such_module_xyz`"),
        ("math:no_such_fn", "has no attribute `no_such_fn`"),
        ("math:pi", "not a callable"),
        (":fn", "package.module:function"),
        ("math:", "package.module:function"),
    ],
)
def test_resolve_callable_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_callable(spec, allow_code=True, what="generator")


def test_resolve_callable_ok() -> None:
    import math

    assert resolve_callable("math:sqrt", allow_code=True, what="generator") is math.sqrt
    assert resolve_callable("os.path:join", allow_code=True, what="generator").__name__ == "join"


# --------------------------------------------------------------------------------------------- ranking parsing
N3 = ("1", "2", "3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[2] > [1] > [3]", [1, 0, 2]),
        ("2>1>3", [1, 0, 2]),
        ("[ 2 ]>[1] >   [3]", [1, 0, 2]),
        ("(2) > (1) > (3)", [1, 0, 2]),
        ("2, 1, 3", [1, 0, 2]),
        ("Ranking: 2 > 1 > 3.", [1, 0, 2]),
        ("**Ranking:** **[3] > [1] > [2]**", [2, 0, 1]),
        ("Response 3 > Response 1 > Response 2", [2, 0, 1]),
        ("2 → 3 → 1", [1, 2, 0]),
        ("Ranking: [3] [1] [2]", [2, 0, 1]),
        ("[3][1][2]", [2, 0, 1]),
        ("[2] > [1]", [1, 0, 2]),  # N-1 labels: the missing one is last
        (
            "Response 1 makes 3 errors in 2 steps, so 1 is weak; response 3 scores 4.5.\n"
            "Final ranking: [3] > [2] > [1]",
            [2, 1, 0],
        ),
        ("Let me compare: 1 > 2 at first glance, but on reflection\n[3] > [2] > [1]", [2, 1, 0]),
        ("Ranking: [2] > [1] > [3]\nRank 1 is clear because response 2 has 3 steps.", [1, 0, 2]),
        ("Final ranking:\n\n[3] > [2] > [1]\n", [2, 1, 0]),
        ("Ranking:\n1. [2]\n2. [3]\n3. [1]\n", [1, 2, 0]),
        ("1 > 1 > 2", None),
        ("4 > 1", None),
        ("Ranking: 4 > 1 > 2", None),
        ("[2]", None),  # one label of three is not a ranking
        ("they are all fine", None),
        ("", None),
    ],
)
def test_parse_ranking(text: str, expected: list[int] | None) -> None:
    assert parse_ranking(text, N3) == expected


def test_parse_ranking_letters() -> None:
    assert parse_ranking("[B] > [A]", "AB") == [1, 0]
    assert parse_ranking("B, A, C", "ABC") == [1, 0, 2]
    assert parse_ranking("ranking: c > a > b", ("A", "B", "C")) == [2, 0, 1]
    assert parse_ranking("[D] > [A]", "AB") == None  # noqa: E711
    assert parse_ranking("2 > 1", "AB") is None  # numbers are not letter labels


def test_parse_ranking_two_candidates_single_label() -> None:
    assert parse_ranking("[2]", ("1", "2")) == [1, 0]
    assert parse_ranking("After weighing both, the better one is [1].", ("1", "2")) == [0, 1]
    assert parse_ranking("3 apples", ("1", "2")) is None


def test_parse_choice() -> None:
    assert parse_choice("Verdict: 2") == 1
    assert parse_choice("Both are fine, but [1] is more precise.") == 0
    assert parse_choice("[2] > [1]") == 1
    assert parse_choice("Response 2 is better") is None  # a bare number in prose is not a verdict
    assert parse_choice("Verdict: [3]") is None
    assert parse_choice("Best: [C]", ("A", "B", "C")) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Score: 7", 7.0),
        ("Score:(10)", 10.0),  # a model copying the template's "Score: (a whole number from 1 to 10)"
        ("Score: (a whole number from 1 to 10)", None),
        ("7/10", 7.0),
        ("I'd say **8**", 8.0),
        ("Rating: [[9]]", 9.0),
        ("5", 5.0),
        ("Score: 6.5 out of 10", 6.5),
        ("First 3/10, on reflection Score: 6", 6.0),
        ("Score: 12", None),
        ("Score: 0", None),
        ("no score", None),
    ],
)
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text) == expected


def test_parse_score_range() -> None:
    assert parse_score("Score: 0", lo=0, hi=1) == 0.0
    assert parse_score("Score: 4", lo=0, hi=1) is None


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(list("0123456789ABCabc[]()<>,;:. \n*-→Rankingfl")), max_size=80)
    | st.text(max_size=80),
    n=st.integers(min_value=2, max_value=8),
    letters=st.booleans(),
)
def test_parse_ranking_total(text: str, n: int, letters: bool) -> None:
    labels = [chr(ord("A") + i) for i in range(n)] if letters else [str(i + 1) for i in range(n)]
    out = parse_ranking(text, labels)
    assert out is None or sorted(out) == list(range(n))


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60), gold=st.text(max_size=20))
def test_parsers_and_verifiers_never_raise(text: str, gold: str) -> None:
    for how in ("boxed", "last_number", "tag:answer", "full"):
        extract_answer(text, how)
    for name in ("exact", "numeric", "choice", "regex"):
        assert 0.0 <= get_verifier(name)(text, gold) <= 1.0
    score = parse_score(text)
    assert score is None or 1 <= score <= 10
    assert parse_choice(text) in (None, 0, 1)


@pytest.mark.parametrize(
    "text",
    ["\\boxed{" * 5000, "<answer>" * 5000, "Ranking: " * 3000, "1 > " * 5000, "1," * 10000, "9" * 20000, "[ " * 5000],
)
def test_adversarial_inputs_stay_fast(text: str) -> None:
    """Quadratic scans of long garbage completions would stall a training step; these must stay linear-ish."""
    extract_answer(text, "boxed")
    extract_answer(text, "tag:answer")
    assert get_verifier("numeric")(text, "1") == 0.0
    parse_ranking(text, N3)
    parse_score(text)


# --------------------------------------------------------------------------------------------- ranking scores
def test_score_ranking_known_values() -> None:
    gold = [0, 1, 2]
    assert score_ranking([0, 1, 2], gold, "exact") == 1.0
    assert score_ranking([0, 2, 1], gold, "exact") == 0.0
    assert score_ranking([0, 2, 1], gold, "top1") == 1.0
    assert score_ranking([1, 0, 2], gold, "top1") == 0.0
    # [0, 2, 1]: pairs (0,1) ok, (0,2) ok, (1,2) swapped -> 2/3 agree, tau = 1/3, (tau + 1) / 2 = 2/3
    assert score_ranking([0, 2, 1], gold, "pairwise") == pytest.approx(2 / 3)
    assert score_ranking([0, 2, 1], gold, "kendall") == pytest.approx(2 / 3)
    assert score_ranking([2, 1, 0], gold, "kendall") == 0.0
    assert score_ranking([0, 1, 2], gold, "kendall") == 1.0
    assert score_ranking([3, 2, 1, 0], [0, 1, 2, 3], "pairwise") == 0.0
    assert score_ranking([1, 0, 3, 2], [0, 1, 2, 3], "pairwise") == pytest.approx(4 / 6)
    for method in ("exact", "top1", "kendall", "pairwise"):
        assert score_ranking(None, gold, method) == 0.0


def test_score_ranking_errors() -> None:
    with pytest.raises(ValueError, match="unknown ranking score"):
        score_ranking([0, 1], [0, 1], "spearman")
    with pytest.raises(ValueError, match="not a permutation"):
        score_ranking([0, 0], [0, 1], "exact")


def test_rank_to_rewards_g4() -> None:
    # candidate 2 best, then 0, 3, 1
    assert rank_to_rewards([2, 0, 3, 1], 4) == pytest.approx([2 / 3, 0.0, 1.0, 1 / 3])
    assert rank_to_rewards([1, 0], 2) == [0.0, 1.0]
    with pytest.raises(ValueError):
        rank_to_rewards([0, 1, 1], 3)


def test_average_rank_rewards() -> None:
    rewards, failures = average_rank_rewards([[0, 1, 2], None, [1, 0, 2]], 3)
    assert rewards == pytest.approx([0.75, 0.75, 0.0]) and failures == 1
    rewards, failures = average_rank_rewards([None, None], 4)
    assert rewards == [0.5] * 4 and failures == 2


# --------------------------------------------------------------------------------------------- aggregation
def test_combine_without_length() -> None:
    total, parts = combine(1.0, True, 50, RewardSpec(correct=1.0, format=0.1))
    assert total == pytest.approx(1.1)
    assert parts == pytest.approx({"correct": 1.0, "format": 0.1, "length": 0.0})
    total, _ = combine(0.0, False, None, RewardSpec())
    assert total == 0.0


@pytest.mark.parametrize(
    ("n_tokens", "length"), [(None, 0.0), (80, 0.0), (100, 0.0), (150, -0.1), (200, -0.2), (900, -0.2)]
)
def test_combine_length_penalty(n_tokens: int | None, length: float) -> None:
    spec = RewardSpec(correct=1.0, format=0.0, length=LengthPenalty(max_tokens=100, weight=0.2))
    total, parts = combine(1.0, True, n_tokens, spec)
    assert parts["length"] == pytest.approx(length)
    assert total == pytest.approx(1.0 + length)
    assert total == pytest.approx(sum(parts.values()))


def test_a_verdict_first_reply_is_read_on_its_first_line():
    from urpo_kit.rewards import parse_verdict

    rambling = "2] > [1]\nThe answer [1] > [2] is wrong, Ranking: [1] > [2]"
    assert parse_verdict(rambling, ["1", "2"], "Ranking: [") == [1, 0]
    assert parse_verdict(rambling, ["1", "2"]) == [0, 1]  # no prefill: the last ranking counts
    assert parse_verdict("best label] > ...\nRanking: [2] > [1]", ["1", "2"], "Ranking: [") == [1, 0]  # fallback
