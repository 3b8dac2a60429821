"""Local files: jsonl, json, csv and parquet, each optionally gzip-compressed.

Readers are generators of `(row_number, row, reason)` so that the caller can stop early (a `limit` without
`shuffle` reads only the head of a large file) and so that one malformed row is counted, not fatal.
`row` is None exactly when `reason` says why the row was rejected.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any

from urpo_kit.errors import SourceError

RawRow = tuple[int, dict | None, str | None]
Rows = Generator[RawRow, None, None]

_GZIP_MAGIC = b"\x1f\x8b"
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def infer_format(path: Path, fmt: str | None) -> str:
    """The explicit `format`, else the suffix with any `.gz` ignored, so `x.jsonl.gz` reads as jsonl."""
    if fmt is not None:
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffixes[-1]]
    raise SourceError(
        f"{path}: cannot tell the file format from the suffix; set `format` to one of jsonl, json, csv, parquet"
    )


def _is_gzip(path: Path) -> bool:
    """Sniff the magic bytes rather than trust the suffix: a `.jsonl` that is really gzip still reads."""
    with path.open("rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else path.open("rb")


def _object_or_reason(value: Any) -> tuple[dict | None, str | None]:
    if isinstance(value, dict):
        return value, None
    return None, f"invalid JSON: expected an object, got {type(value).__name__}"


def _read_jsonl(path: Path) -> Rows:
    """One object per line; blank lines are ignored but still count for line numbers."""
    with _open_binary(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield number, None, f"invalid JSON: {e}"
                continue
            yield (number, *_object_or_reason(value))


def _read_json(path: Path) -> Rows:
    """A list of objects, or an object holding exactly one list (e.g. `{"data": [...]}`)."""
    with _open_binary(path) as f:
        try:
            data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SourceError(f"{path}: invalid JSON: {e}") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            found = f"found {', '.join(lists)}" if lists else "found none"
            raise SourceError(f"{path}: expected a list of objects or an object with one list field ({found})")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a list of objects, got {type(data).__name__}")
    for number, value in enumerate(data, start=1):
        yield (number, *_object_or_reason(value))


def _read_csv(path: Path) -> Rows:
    """csv.DictReader over the header; the row number is the line the record ends on."""
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        try:
            width = len(reader.fieldnames or [])
            for row in reader:
                if None in row:
                    yield reader.line_num, None, f"expected {width} columns, got {width + len(row[None])}"
                elif any(v is None for v in row.values()):
                    got = sum(v is not None for v in row.values())
                    yield reader.line_num, None, f"expected {width} columns, got {got}"
                else:
                    yield reader.line_num, row, None
        except (csv.Error, UnicodeDecodeError) as e:
            raise SourceError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None


def _read_parquet(path: Path) -> Rows:
    """Batch by batch through pyarrow, so an early stop does not load the whole file."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError(f"{path}: reading parquet needs pyarrow (`pip install pyarrow`)") from None
    # Parquet needs random access (the footer is at the end), so a gzip-compressed file is inflated in memory.
    source: Any = pa.BufferReader(gzip.decompress(path.read_bytes())) if _is_gzip(path) else str(path)
    try:
        number = 0
        for batch in pq.ParquetFile(source).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield number, row, None
    except pa.ArrowException as e:
        raise SourceError(f"{path}: invalid parquet: {e}") from None


READERS: dict[str, Callable[[Path], Rows]] = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _read_csv,
    "parquet": _read_parquet,
}


def iter_file(path: Path, fmt: str | None = None) -> Rows:
    """Rows of a local file; a missing file or unreadable format is a SourceError naming the path."""
    if not path.exists():
        raise SourceError(f"{path}: file not found")
    if not path.is_file():
        raise SourceError(f"{path}: not a file")
    return READERS[infer_format(path, fmt)](path)
