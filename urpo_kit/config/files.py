"""The one rule for files that task, recipe and suite YAML makes us read (includes and templates), and for the files
and folders our commands write.

Task files come from other people, so what they name is read only when it is
- inside an allowed folder: the folder of the file being loaded (and its subfolders), a `templates/` folder beside
  that folder, the built-in templates, and any folder the user allows explicitly (`--allow-path DIR`);
  symlinks are resolved before the check, so a link inside the task folder cannot lead out of it;
- a regular file (not a device, pipe or folder: `/dev/zero` or `/dev/stdin` would never end) of at most
  `MAX_FILE_BYTES`.
Errors name the file and the rule, never its contents.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator, Sequence

from urpo_kit.errors import UrpoError

BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_FILE_BYTES = 1_000_000  # a task, recipe or template file; far above any real one
ALLOW_PATH_HELP = ("a folder task files may also read templates and includes from (repeatable); by default only "
                   "their own folder tree, a templates/ folder beside it and the built-in templates")

_allowed: list[Path] = []  # folders widened by the user for this process (`--allow-path`)


class FileRefused(UrpoError):
    """A file a task names lies outside the allowed folders, is not a regular file, or is too large."""


@contextlib.contextmanager
def allowed_paths(folders: Sequence[Path]) -> Iterator[None]:
    """Allow task files to read from `folders` too, for the duration of one command."""
    added = [Path(os.path.realpath(f)) for f in folders]
    _allowed.extend(added)
    try:
        yield
    finally:
        del _allowed[len(_allowed) - len(added):]


def roots(base_dir: Path) -> tuple[Path, ...]:
    """The folders a file loaded from `base_dir` may read from (see the module docstring)."""
    base = Path(os.path.realpath(base_dir))
    return (base, base.parent / "templates", BUILTIN_TEMPLATES, *_allowed)


def _inside(real: Path, folders: Sequence[Path]) -> bool:
    return any(real == f or f in real.parents for f in folders)


def confined(path: Path, base_dir: Path) -> Path:
    """`path` with symlinks resolved, if it lies inside the folders allowed from `base_dir`; else FileRefused."""
    real = Path(os.path.realpath(path))
    if not _inside(real, roots(base_dir)):
        raise FileRefused(f"{path} is outside the folders a task file may read (its own folder {base_dir}, a "
                          "templates/ folder beside it, the built-in templates); allow it with --allow-path")
    return real


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` (default MAX_FILE_BYTES) bytes; FileRefused (or OSError)
    otherwise, without reading more than `limit + 1` bytes and without opening anything that could block (a pipe,
    a terminal)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    info = os.stat(path)  # follows symlinks: the rule applies to what is actually read
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(21, "is a folder", str(path))
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{path} is not a regular file (a device, pipe or socket is never read)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(f"{path} is larger than {limit} bytes")
    return data


def writable_file(path: Path) -> None:
    """Refuse (UrpoError) an output file that is a folder or cannot be created or appended to, before any work."""
    if path.is_dir():
        raise UrpoError(f"{path}: is a folder; name a file to write")
    folder = path.parent if str(path.parent) else Path(".")
    target = path if path.exists() else _existing_ancestor(folder)
    if not os.access(target, os.W_OK):
        raise UrpoError(f"{path}: cannot write here (permission denied on {target})")


def writable_folder(path: Path) -> None:
    """Refuse (UrpoError) an output folder that is a file or cannot be created or written to, before any work."""
    if path.exists() and not path.is_dir():
        raise UrpoError(f"{path}: is a file, not a folder")
    target = path if path.exists() else _existing_ancestor(path)
    if not target.is_dir():
        raise UrpoError(f"{path}: cannot create this folder ({target} is a file)")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UrpoError(f"{path}: cannot write here (permission denied on {target})")


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path
