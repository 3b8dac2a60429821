"""Built-in offline generators: synthetic, templated rows for the three task kinds, no download needed.

Every generator has the signature `fn(n: int, seed: int, **params) -> list[dict]` and draws from one
`random.Random(seed)`, so a seed always yields the same rows. User generators are named `pkg.mod:fn` and are
imported only with `allow_code` (see `resolve_generator`).

| name                | kind        | columns                                          |
|---------------------|-------------|--------------------------------------------------|
| `arithmetic`        | verifiable  | question, answer (worked, ends `#### N`), difficulty, value |
| `preference_pairs`  | preference  | prompt, chosen, rejected, category               |
| `preference_ranked` | preference  | prompt, ranked (best first)                      |
| `instructions`      | open_ended  | instruction, category                            |

All text is invented from the word tables of each module; nothing is copied from a dataset.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from urpo_kit.errors import SourceError
from urpo_kit.plugins import is_dotted_path, resolve_callable
from urpo_kit.sources.generators.arithmetic import arithmetic
from urpo_kit.sources.generators.instructions import instructions
from urpo_kit.sources.generators.preference import preference_pairs, preference_ranked

Generator = Callable[..., list[dict]]

GENERATORS: dict[str, Generator] = {
    "arithmetic": arithmetic,
    "preference_pairs": preference_pairs,
    "preference_ranked": preference_ranked,
    "instructions": instructions,
}


def resolve_generator(name: str, *, allow_code: bool = False) -> Generator:
    """A built-in by name, or a user's `pkg.mod:fn` (refused with CodeNotAllowed unless `allow_code`)."""
    if is_dotted_path(name):
        try:
            return resolve_callable(name, allow_code=allow_code, what="generator")
        except ValueError as e:
            raise SourceError(str(e)) from None
    if name not in GENERATORS:
        raise SourceError(
            f"unknown generator `{name}`; built-ins: {', '.join(GENERATORS)} (or `pkg.mod:fn` with --allow-code)"
        )
    return GENERATORS[name]


def generate(name: str, n: int, seed: int, params: dict[str, Any], *, allow_code: bool = False) -> list[dict]:
    """Run a generator, turning bad parameters and bad output into SourceErrors that name the generator."""
    fn = resolve_generator(name, allow_code=allow_code)
    try:
        inspect.signature(fn).bind(n, seed, **params)
    except TypeError as e:
        accepted = [p for p in inspect.signature(fn).parameters if p not in ("n", "seed")]
        raise SourceError(f"generator `{name}`: {e}; parameters: {', '.join(accepted) or 'none'}") from None
    try:
        rows = fn(n, seed, **params)
    except ValueError as e:
        raise SourceError(f"generator `{name}`: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"generator `{name}` must return a list of dicts, got {type(rows).__name__}")
    return rows
