"""Errors that reach the user as one line each (`file:line:column: field.path: message`), never a traceback."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def did_you_mean(word: str, choices: Iterable[object]) -> str:
    """`; did you mean `x`?` for the closest of `choices`, or nothing: a hint that ends a message."""
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def undefined_hint(message: str | None, variables: Iterable[object], shown: int = 30) -> str:
    """For Jinja's "'x' is undefined": the variables there are, and the closest one, so the fix is in the message."""
    match = re.match(r"'([^']+)' is undefined", message or "")
    if match is None:
        return ""
    names = [str(v) for v in variables]
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"; available variables: {listed or 'none'}{did_you_mean(match[1], names)}"


@dataclass(frozen=True)
class Problem:
    """One located problem in a user file."""

    file: str | Path | None
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class UrpoError(Exception):
    """Base class for errors the CLI reports without a traceback (exit code 2)."""

    exit_code = 2


class ConfigError(UrpoError):
    """One or more problems in a task, recipe or suite file."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class FieldError(UrpoError):
    """A problem with one field of a task (`player.prompt`, `answer.verifier`), raised where the field is resolved or
    used; the caller that holds the task's positions turns it into a located Problem (`config.loader.locate`).
    `template_file`/`template_line` say where inside a template file, `row_number` which source row."""

    def __init__(self, field: str, message: str, *, template_file: Path | None = None,
                 template_line: int | None = None, row_number: int | None = None):
        self.field, self.message = field, message
        self.template_file, self.template_line, self.row_number = template_file, template_line, row_number
        where = f" (row {row_number})" if row_number is not None else ""
        super().__init__(f"{field}: {message}{where}")


class SourceError(UrpoError):
    """A data source cannot be read, or too many of its rows are malformed."""


class SourceUnavailable(SourceError):
    """A remote source cannot be reached (offline machine, no cache)."""


class CodeNotAllowed(UrpoError):
    """A dotted-path `pkg.mod:fn` was named but running user code was not allowed."""
