"""`urpo-kit judge`: the rows of a file judged into an append-only JSONL output that a re-run resumes.

Each output record is keyed by a hash of the row and of everything that decides its judgment (mode, template
content, settings, model), so a re-run skips rows already done and judges the rest; output is flushed after every
batch, so an interrupted run loses at most the batch in flight. Malformed input rows are reported with their line
number and skipped; they never stop the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from urpo_kit.config.files import writable_file
from urpo_kit.console import make_console
from urpo_kit.errors import UrpoError
from urpo_kit.referee.backends import Backend
from urpo_kit.referee.rows import JudgeRow, judge_item, row_key, to_result, validation_message
from urpo_kit.serve.settings import JudgeSettings
from urpo_kit.sources.files import iter_file


@dataclass(frozen=True)
class Malformed:
    line: int
    message: str


@dataclass
class BatchReport:
    """What a run did; `status` counts rows by parse status, `correct` holds gold credit of chosen/rejected rows."""

    judged: int = 0
    already_done: int = 0
    duplicates: int = 0
    malformed: list[Malformed] = field(default_factory=list)
    status: Counter = field(default_factory=Counter)
    agreement: list[float] = field(default_factory=list)
    correct: list[float] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Pending:
    line: int
    row: JudgeRow
    key: str


def read_rows(path: Path) -> tuple[list[tuple[int, JudgeRow]], list[Malformed]]:
    """Valid rows with their line numbers, and the malformed ones with what is wrong (JSON or row format)."""
    rows, malformed = [], []
    for number, raw, reason in iter_file(path):
        if raw is None:
            malformed.append(Malformed(number, str(reason)))
            continue
        try:
            rows.append((number, JudgeRow.model_validate(raw)))
        except ValidationError as e:
            malformed.append(Malformed(number, validation_message(e)))
    return rows, malformed


# Every record this command writes starts this way (json.dumps keeps the key order), which is how a re-run tells
# its own records, and a torn one of its own, from anything else.
_RECORD = re.compile(rb'\{"hash": "[0-9a-f]{32}", "line": \d+, ')
_TORN = re.compile(rb'\{"hash": "[0-9a-f]{32}')


def check_paths(source: Path, output: Path) -> None:
    """Refuse an output that is the input itself (also through a link) or that cannot be written, before any work."""
    if output.exists() and source.exists() and os.path.samefile(source, output):
        raise UrpoError(f"--output {output} is the input file; write the results to another file")
    writable_file(output)


def done_keys(path: Path) -> set[str]:
    """Keys already in the output, which must hold only records of this command. A last line of ours torn by a
    crash mid-write is cut off (that row is judged again); anything else is refused, never truncated."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    keys = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            if not _RECORD.match(line):
                raise ValueError(line)
            keys.add(json.loads(line)["hash"])
        except ValueError:
            raise UrpoError(f"{path}:{number}: not a record written by `urpo-kit judge`; refusing to append to "
                            "this file (choose another --output)") from None
    if end < len(data):
        if not _TORN.match(data[end:]):
            raise UrpoError(f"{path}:{len(lines) + 1}: the last line is unfinished and not a record written by "
                            "`urpo-kit judge`; refusing to touch this file (choose another --output)")
        with path.open("r+b") as f:
            f.truncate(end)
    return keys


@contextlib.contextmanager
def reporting(backend: Backend, advance: Callable[[int], None]) -> Iterator[None]:
    """Progress per generation batch from backends that report it (`HFBackend.progress`), restored afterwards."""
    if not hasattr(backend, "progress"):
        yield
        return
    before = backend.progress
    backend.progress = advance
    try:
        yield
    finally:
        backend.progress = before


def judge_file(source: Path, output: Path, backend: Backend, settings: JudgeSettings, *, model: str,
               rows_per_batch: int = 32, console: Console | None = None) -> BatchReport:
    """Judge every row of `source` not yet in `output`, appending one JSON record per row (input order). A row the
    judge cannot show (more responses than letter labels, a label that is not one token for a likelihood verdict)
    is reported with its line and skipped like a malformed one."""
    console = console or make_console(stderr=True)
    start = time.perf_counter()
    report = BatchReport()
    check_paths(source, output)
    done = done_keys(output)
    rows, report.malformed = read_rows(source)
    judge = settings.judge(backend)
    unjudgeable = {line: problem for line, row in rows if (problem := judge.problem(len(row.input.responses)))}
    report.malformed = sorted(report.malformed + [Malformed(line, p) for line, p in unjudgeable.items()],
                              key=lambda m: m.line)
    rows = [(line, row) for line, row in rows if line not in unjudgeable]
    fingerprint = settings.fingerprint(judge, model)
    for bad in report.malformed:
        console.print(f"[red]error[/red] {escape(f'{source}:{bad.line}: {bad.message}')}", highlight=False,
                      soft_wrap=True)
    pending: list[_Pending] = []
    queued: set[str] = set()
    for line, row in rows:
        key = row_key(row.input, fingerprint)
        if key in done:
            report.already_done += 1
        elif key in queued:
            report.duplicates += 1
        else:
            queued.add(key)
            pending.append(_Pending(line, row, key))

    cost = [judge.judgments(len(p.row.input.responses)) for p in pending]
    output.parent.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("[bold]judging"), BarColumn(), MofNCompleteColumn(), TextColumn("judgments"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with output.open("a", encoding="utf-8") as out, Progress(*columns, console=console) as progress:
        task = progress.add_task("judging", total=sum(cost))
        with reporting(backend, lambda k: progress.advance(task, k)):
            for begin in range(0, len(pending), rows_per_batch):
                batch = pending[begin:begin + rows_per_batch]
                settings.seed_batch([p.key for p in batch])
                verdicts = judge.judge([judge_item(p.row.input, p.key) for p in batch])
                for p, verdict in zip(batch, verdicts):
                    result = to_result(p.row.input, verdict, judge.verdict, p.row.id)
                    record: dict[str, Any] = {"hash": p.key, "line": p.line, **result.model_dump()}
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    _tally(report, record)
                out.flush()
                os.fsync(out.fileno())
                progress.update(task, completed=sum(cost[:begin + len(batch)]))
    report.seconds = time.perf_counter() - start
    return report


def _tally(report: BatchReport, record: dict[str, Any]) -> None:
    report.judged += 1
    report.status[record["status"]] += 1
    if record["agreement"] is not None:
        report.agreement.append(record["agreement"])
    if record["correct"] is not None:
        report.correct.append(record["correct"])
