"""Answer extraction: pull the final answer out of a player's free-form completion.

Models reason first and answer last, so every method takes the *last* occurrence. An empty extraction is `None`:
"no answer given" must not earn the format reward.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Sequence

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A number as written in prose: optional sign and currency, thousands groups, decimals, an optional `/denominator`.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-−]?)\\?\$?\s?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+))?(?![\d])"
)
_TAG_NAME = re.compile(r"[A-Za-z_][\w.\-]*")


Extractor = Callable[[str], "str | None"]


def whole_text(text: str) -> str:
    """The whole completion (stripped): for verifiers that find the answer themselves, e.g. `choice`."""
    return text


def _tag_finder(name: str) -> Extractor:
    if not _TAG_NAME.fullmatch(name):
        raise ValueError(f"`tag:{name}`: tag name must look like an XML name, e.g. `tag:answer`")
    return functools.partial(_last_tag, name=name)


def _regex_finder(pattern: str) -> Extractor:
    if not pattern:
        raise ValueError("`regex:` needs a pattern, e.g. `regex:Answer: (\\S+)`")
    try:
        return functools.partial(_last_regex, pattern=re.compile(pattern))
    except re.error as e:
        raise ValueError(f"`regex:{pattern}`: invalid regular expression: {e}") from None


def extractor(how: str | Sequence[str]) -> Extractor:
    """The extraction `how` names (see `EXTRACT_METHODS`) as a callable, resolved once: a typo fails here, at load
    time, rather than scoring 0 forever. A list is a chain, tried in turn until one finds an answer (`[boxed,
    last_number]`: a boxed answer, else the last number). The callable returns the stripped answer, or `None`."""
    if not isinstance(how, str):
        if not how:
            raise ValueError("an extraction chain needs at least one method")
        chain = [extractor(h) for h in how]
        return lambda text: next((found for find in chain if (found := find(text)) is not None), None)
    name, colon, arg = how.partition(":")
    if colon and name in PARAMETRIC_EXTRACTORS:
        find = PARAMETRIC_EXTRACTORS[name][1](arg)
    elif how in EXTRACTORS:
        find = EXTRACTORS[how]
    else:
        raise ValueError(f"unknown extract method `{how}`; valid: {', '.join(EXTRACT_METHODS)}, or a list of them "
                         "tried in turn")

    def extract(text: str) -> str | None:
        found = find(text)
        return None if found is None else (found.strip() or None)

    return extract


def extract_answer(text: str, how: str | Sequence[str]) -> str | None:
    """The answer in `text` according to `how` (see `EXTRACT_METHODS`), stripped; `None` when there is none."""
    return extractor(how)(text)


def last_boxed(text: str) -> str | None:
    """Content of the last *closed* `\\boxed{...}` / `\\fbox{...}`; a truncated last box falls back to the one before.

    One pass pairs every brace (`\\{` and `\\}` are literal, not grouping), so a text full of unclosed boxes
    stays linear.
    """
    opens = [m.end() - 1 for m in _BOX_START.finditer(text)]
    if not opens:
        return None
    closing: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    for start in reversed(opens):
        if start in closing:
            return text[start + 1 : closing[start]]
    return None


def last_number(text: str) -> str | None:
    """The last number in `text`, normalised: `$1,234.50` gives `1234.50`, `−3` gives `-3`, `3 / 4` gives `3/4`."""
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    out = ("-" if m["sign"] else "") + m["num"].replace(",", "")
    return out + f"/{m['den']}" if m["den"] else out


def _last_tag(text: str, name: str) -> str | None:
    """Content from the last `<name>` that is closed later up to the first `</name>` after it.

    Pairing tag positions (not a non-greedy `<a>(.*?)</a>` scan) keeps a text full of unclosed tags fast, and a stray
    `</name>` at the end cannot pull earlier closing tags into the answer.
    """
    closes = [m.start() for m in re.finditer(rf"</{re.escape(name)}\s*>", text, flags=re.IGNORECASE)]
    if not closes:
        return None
    for m in reversed(list(re.finditer(rf"<{re.escape(name)}\s*>", text, flags=re.IGNORECASE))):
        after = bisect.bisect_left(closes, m.end())
        if after < len(closes):
            return text[m.end() : closes[after]]
    return None


def _last_regex(text: str, pattern: re.Pattern[str]) -> str | None:
    """First capture group of the last match (the whole match when the pattern has no group or it did not take part)."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    if m.re.groups and m.group(1) is not None:
        return m.group(1)
    return m.group(0)


# --------------------------------------------------------------------------------------------- registry
# What `extractor` resolves names from, and what the generated reference documents (each function's docstring says
# what it returns): plain methods, and methods written `NAME:ARGUMENT`, whose finder is built from the argument.
EXTRACTORS: dict[str, Extractor] = {"boxed": last_boxed, "last_number": last_number,
                                    "full": whole_text}
# NAME:ARGUMENT methods: (what the argument is, the finder built from it, the function whose docstring says what
# it returns)
PARAMETRIC_EXTRACTORS: dict[str, tuple[str, Callable[[str], Extractor], Callable[..., str | None]]] = {
    "tag": ("NAME", _tag_finder, _last_tag),
    "regex": ("PATTERN", _regex_finder, _last_regex),
}
EXTRACT_METHODS = (*EXTRACTORS, *(f"{name}:{arg}" for name, (arg, _, _) in PARAMETRIC_EXTRACTORS.items()))
