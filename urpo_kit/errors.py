"""Errors that reach the user as one line each (`file:line:column: field.path: message`), never a traceback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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


class SourceError(UrpoError):
    """A data source cannot be read, or too many of its rows are malformed."""


class SourceUnavailable(SourceError):
    """A remote source cannot be reached (offline machine, no cache)."""


class CodeNotAllowed(UrpoError):
    """A dotted-path `pkg.mod:fn` was named but running user code was not allowed."""
