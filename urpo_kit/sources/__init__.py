"""Rows from a `Source` spec: a local file, a Hugging Face dataset, or a built-in generator.

The order of operations is fixed so that held-out splits are reproducible: read, drop malformed rows (counted
with their row numbers), shuffle with `seed`, then `skip`, then `limit`. Without `shuffle`, a `limit` stops
reading once `skip + limit` good rows are in, so validating a task or taking a head of a large file is cheap.
"""

from __future__ import annotations

import random
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from urpo_kit.config.schema import Source
from urpo_kit.errors import SourceError
from urpo_kit.sources.files import Rows, iter_file
from urpo_kit.sources.generators import GENERATORS, generate, resolve_generator
from urpo_kit.sources.hf import iter_hf

__all__ = [
    "GENERATORS",
    "LoadedRows",
    "SkippedRow",
    "describe_skipped",
    "describe_source",
    "load_rows",
    "resolve_generator",
    "describe_skipped",
]

MAX_REASONS_SHOWN = 5


@dataclass(frozen=True)
class SkippedRow:
    """A malformed row that was left out: where it was and why."""

    row_number: int
    reason: str


@dataclass
class LoadedRows:
    """The rows kept, each with its 1-based row (or line) number in the source for later error messages."""

    rows: list[dict]
    row_numbers: list[int]
    skipped: list[SkippedRow] = field(default_factory=list)
    total_seen: int = 0
    description: str = ""


def describe_source(source: Source) -> str:
    """A short label for messages and reports: `data/x.jsonl`, `hf:openai/gsm8k[main]/train`, `generator:...`."""
    if source.path is not None:
        return source.path.as_posix()
    if source.hf is not None:
        config = f"[{source.config}]" if source.config else ""
        revision = f"@{source.revision}" if source.revision else ""
        return f"hf:{source.hf}{config}/{source.split}{revision}"
    args = ", ".join([f"n={source.n}", f"seed={source.seed}"] + [f"{k}={v!r}" for k, v in source.params.items()])
    return f"generator:{source.generator}({args})"


def _raw_rows(source: Source, base_dir: Path | None, allow_code: bool, progress: bool, head: bool) -> Rows:
    if source.path is not None:
        path = source.path if base_dir is None or source.path.is_absolute() else base_dir / source.path
        return iter_file(path, source.format)
    if source.hf is not None:
        return iter_hf(source, stream=head, progress=progress)
    assert source.generator is not None  # the schema guarantees exactly one of path, hf, generator
    rows = generate(source.generator, source.n, source.seed, source.params, allow_code=allow_code)
    return ((number, row, None) for number, row in enumerate(rows, start=1))


def describe_skipped(skipped: list[SkippedRow]) -> str:
    """The first few skipped rows with their row numbers and reasons, for one line of a message."""
    shown = "; ".join(f"row {s.row_number}: {s.reason}" for s in skipped[:MAX_REASONS_SHOWN])
    return shown + (f"; and {len(skipped) - MAX_REASONS_SHOWN} more" if len(skipped) > MAX_REASONS_SHOWN else "")


def _too_many_skipped(label: str, skipped: list[SkippedRow], seen: int, limit: float) -> SourceError:
    return SourceError(f"{label}: {len(skipped)} of {seen} rows are malformed, more than "
                       f"max_error_fraction={limit}: {describe_skipped(skipped)}")


def _load(source: Source, base_dir: Path | None, allow_code: bool, progress: bool) -> LoadedRows:
    label = describe_source(source)
    wanted = None if source.shuffle or source.limit is None else source.skip + source.limit
    rows: list[dict] = []
    numbers: list[int] = []
    skipped: list[SkippedRow] = []
    seen = 0
    with closing(_raw_rows(source, base_dir, allow_code, progress, head=wanted is not None)) as raw:
        for number, row, reason in raw:
            seen += 1
            if row is None:
                skipped.append(SkippedRow(number, reason or "malformed row"))
                continue
            rows.append(row)
            numbers.append(number)
            if wanted is not None and len(rows) >= wanted:
                break
    if skipped and len(skipped) > source.max_error_fraction * seen:
        raise _too_many_skipped(label, skipped, seen, source.max_error_fraction)
    if not rows:
        raise SourceError(f"{label}: no usable rows" + (f" ({len(skipped)} malformed)" if skipped else ""))
    if source.shuffle:
        order = list(range(len(rows)))
        random.Random(source.seed).shuffle(order)
        rows, numbers = [rows[i] for i in order], [numbers[i] for i in order]
    if source.skip >= len(rows):
        raise SourceError(f"{label}: skip={source.skip} leaves no rows (the source has {len(rows)})")
    end = None if source.limit is None else source.skip + source.limit
    return LoadedRows(rows[source.skip:end], numbers[source.skip:end], skipped, seen, label)


def load_rows(
    source: Source,
    *,
    base_dir: Path | None = None,
    allow_code: bool = False,
    progress: bool = False,
) -> LoadedRows:
    """Read, clean, shuffle, skip and limit the rows of `source`.

    `base_dir` resolves a relative `source.path`; `allow_code` permits `pkg.mod:fn` generators; `progress` shows
    download progress for hub datasets. Errors name the source; a task's caller locates them at its `source` line
    (`compiler.source_error`).
    """
    return _load(source, base_dir, allow_code, progress)
