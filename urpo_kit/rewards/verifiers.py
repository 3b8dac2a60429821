"""Verifiers: compare an extracted answer with the gold answer and return a score in [0, 1].

Every verifier has the signature `fn(predicted, gold, **kwargs) -> float`; the keyword arguments come from the task's
`answer.verifier_args`, and unknown ones raise `TypeError` (each built-in names its options explicitly). Verifiers
never raise on odd model output: a training run must not die because one completion was garbage.
"""

from __future__ import annotations

import functools
import math as _math
import re
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from urpo_kit.errors import did_you_mean
from urpo_kit.rewards.extract import last_boxed
from urpo_kit.plugins import is_dotted_path, resolve_callable

Verifier = Callable[..., float]


# --------------------------------------------------------------------------------------------- exact
def _squash(text: str) -> str:
    return " ".join(text.split())


def exact(predicted: str, gold: str, *, case_sensitive: bool = False) -> float:
    """String equality after collapsing whitespace (and case, unless `case_sensitive`)."""
    a, b = _squash(predicted), _squash(gold)
    if not case_sensitive:
        a, b = a.casefold(), b.casefold()
    return float(a == b)


# --------------------------------------------------------------------------------------------- numeric
_NUM = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{1,3})?"  # bounded exponent: no 1e99999
_FRAC = re.compile(rf"([-+]?)\s*\\frac\s*(?:\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}|(\d)(\d))")
_PLAIN = re.compile(
    rf"({_NUM})(?:\s*/\s*({_NUM}))?"  # a number or a fraction a/b
    rf"(?:\s*(?:\\times|\\cdot|×)\s*10\s*\^\s*\{{?\s*([-+]?\d{{1,3}})\s*\}}?)?"  # optional "x 10^{n}"
)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_ASSIGN = re.compile(r"^[A-Za-z_]\w*\s*=\s*")
_EXPONENT = re.compile(r"\^\s*\{?\s*-?\d+\s*\}?")
_LATEX_NOISE = (
    ("−", "-"), ("\\$", ""), ("$", ""), ("\\%", "%"), ("{,}", ","), ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
    ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", " "),
    ("^{\\circ}", ""), ("^\\circ", ""), ("°", ""),
)


def parse_number(text: str, *, percent: bool = True) -> list[Fraction] | None:
    """Exact values `text` may denote, or `None` if it is not a number (optionally with a trailing unit).

    Handles `1,000`, `-2.5`, `3/4`, `\\frac{1}{2}`, `$1,234.50`, `1.5 \\times 10^{3}`, `x = 5`, `12 cm`,
    `\\boxed{...}`. A percentage gives two readings when `percent` is on (`50%` is 50 or 0.5), because gold answers
    and models disagree on whether the `%` is part of the value; with `percent` off `%` is just a unit.
    """
    s = text.strip()
    if "\\boxed" in s or "\\fbox" in s:
        s = last_boxed(s) or s
    for old, new in _LATEX_NOISE:
        s = s.replace(old, new)
    s = _TEXT_CMD.sub(r" \1", s).strip()
    s = _ASSIGN.sub("", s)
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1].strip()
    try:
        if m := _FRAC.match(s):
            num, den = (m[2], m[3]) if m[2] is not None else (m[4], m[5])
            value = Fraction(num.replace(",", "")) / Fraction(den.replace(",", ""))
            if m[1] == "-":
                value = -value
        elif m := _PLAIN.match(s):
            value = Fraction(m[1].replace(",", ""))
            if m[2] is not None:
                value /= Fraction(m[2].replace(",", ""))
            if m[3] is not None:
                value *= Fraction(10) ** int(m[3])
        else:
            return None
    except (ZeroDivisionError, ValueError):  # ValueError: more digits than Python converts (4300)
        return None
    rest = s[m.end():].strip()
    is_percent = rest.startswith("%")
    rest = rest.lstrip("%").strip()
    if rest not in ("", ".") and (rest[0] in "+-*/^=<>!(.,:;" or re.search(r"\d", _EXPONENT.sub("", rest))):
        return None  # the text goes on as an expression or a list, not a unit (`m^2` is a unit)
    return [value, value / 100] if is_percent and percent else [value]


def _close(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    # Fraction arithmetic: no overflow on huge values, exact equality for exact inputs.
    return abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol))


def numeric(predicted: str, gold: str, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9, percent: bool = True) -> float:
    """Numeric equality within `rel_tol` / `abs_tol`; 0 when either side is not a number."""
    a, b = parse_number(predicted, percent=percent), parse_number(gold, percent=percent)
    if a is None or b is None:
        return 0.0
    return float(any(_close(x, y, rel_tol, abs_tol) for x in a for y in b))


# --------------------------------------------------------------------------------------------- math
def _mv_parse(text: str, timeout: int | None) -> list[Any]:
    """math_verify wants delimited LaTeX: keep `$...$` / `\\boxed{}` if present, else try `$...$` then `\\boxed{}`."""
    from math_verify import parse

    if "$" in text or "\\boxed" in text or "\\(" in text or "\\[" in text:
        return parse(text, parsing_timeout=timeout)
    return parse(f"${text}$", parsing_timeout=timeout) or parse(f"\\boxed{{{text}}}", parsing_timeout=timeout)


def math(
    predicted: str,
    gold: str,
    *,
    float_rounding: int = 6,
    numeric_precision: int = 15,
    strict: bool = True,
    timeout_seconds: int = 5,
) -> float:
    """Symbolic equivalence through math_verify (`\\frac{2}{4}` = `0.5`, `x^2+2x+1` = `(x+1)^2`); any error is 0.

    math_verify's timeouts use `signal.alarm`, which only works in the main thread; elsewhere (reward workers,
    the HTTP judge) they are switched off, so a pathological expression there is bounded only by sympy itself.
    """
    if not predicted.strip() or not gold.strip():
        return 0.0
    if _squash(predicted) == _squash(gold):
        return 1.0
    from math_verify import verify

    timeout = timeout_seconds if threading.current_thread() is threading.main_thread() else None
    try:
        g, p = _mv_parse(gold, timeout), _mv_parse(predicted, timeout)
        if not g or not p:
            return 0.0
        ok = verify(
            g, p, float_rounding=float_rounding, numeric_precision=numeric_precision, strict=strict,
            timeout_seconds=timeout,
        )
    except Exception:  # math_verify/sympy can raise almost anything on model output; a wrong answer scores 0
        return 0.0
    return float(bool(ok))


# --------------------------------------------------------------------------------------------- choice
_CHOICE_BARE = re.compile(r"[(\[]?([A-Za-z])[)\].:]?")
_CHOICE_ANSWER = re.compile(
    r"answer\s*(?:is|:)?\s*[:\-]?\s*(?:option|choice)?\s*[(\[]?([A-Za-z])(?![A-Za-z])([)\]]?)", re.IGNORECASE
)
_CHOICE_LEAD = re.compile(r"[(\[]?([A-Z])[)\].:]\s")
_CHOICE_MARKED = re.compile(r"[(\[]([A-Z])[)\]]")


def choice_letter(text: str) -> str | None:
    """The multiple-choice letter a text commits to, upper-cased: `(B)`, `B.`, `[b]`, `answer is b`, `B) 42`.

    Lower-case letters count only when the whole text is the letter or it ends an "answer is" phrase, so that the
    article in "the answer is a number" is not read as option A.
    """
    s = text.strip()
    if "\\boxed" in s:
        s = last_boxed(s) or s
    s = _TEXT_CMD.sub(r"\1", s).replace("*", "").replace("$", "").strip()
    if m := _CHOICE_BARE.fullmatch(s):
        return m[1].upper()
    for m in reversed(list(_CHOICE_ANSWER.finditer(s))):
        after = s[m.end():].lstrip()
        if m[1].isupper() or m[2] or not after or after[0] in ".,;:!)":
            return m[1].upper()
    if m := _CHOICE_LEAD.match(s):
        return m[1]
    marked = _CHOICE_MARKED.findall(s)
    return marked[-1] if marked else None


def choice(predicted: str, gold: str) -> float:
    """Same multiple-choice letter on both sides (the gold may itself be written `(B)` or `B`)."""
    p, g = choice_letter(predicted), choice_letter(gold)
    return float(p is not None and p == g)


# --------------------------------------------------------------------------------------------- regex
def regex(predicted: str, gold: str, *, ignore_case: bool = False) -> float:
    """The gold answer is a regular expression that must match the whole (stripped) prediction."""
    try:
        return float(re.fullmatch(gold, predicted.strip(), flags=re.IGNORECASE if ignore_case else 0) is not None)
    except re.error:
        return 0.0


# --------------------------------------------------------------------------------------------- registry
VERIFIERS: dict[str, Verifier] = {"exact": exact, "numeric": numeric, "math": math, "choice": choice, "regex": regex}


def _as_score(fn: Callable[..., Any]) -> Verifier:
    """Wrap a user verifier so that bools become floats and an out-of-range result fails loudly, naming the function."""

    @functools.wraps(fn)
    def wrapper(predicted: str, gold: str, **kwargs: Any) -> float:
        out = fn(predicted, gold, **kwargs)
        if isinstance(out, bool):
            return float(out)
        if isinstance(out, (int, float)) and _math.isfinite(out) and 0.0 <= out <= 1.0:
            return float(out)
        raise ValueError(
            f"verifier {fn.__module__}.{fn.__qualname__} returned {out!r}; expected a bool or a float in [0, 1]"
        )

    return wrapper


def get_verifier(name: str, *, allow_code: bool = False) -> Verifier:
    """A built-in verifier by name, or a user's `pkg.mod:fn` when `allow_code` (else `CodeNotAllowed`)."""
    if is_dotted_path(name):
        return _as_score(resolve_callable(name, allow_code=allow_code, what="verifier"))
    try:
        return VERIFIERS[name]
    except KeyError:
        raise ValueError(f"unknown verifier `{name}`; valid: {', '.join(VERIFIERS)} or `package.module:function`"
                         f"{did_you_mean(name, VERIFIERS)}") from None
