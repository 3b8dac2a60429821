"""A folder cache that several processes can share: each entry is built once, published atomically.

`accelerate launch --num_processes N` starts N processes that all resolve the same model at once; without a
lock they would all convert it, and one could read a folder that another is still writing.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """The urpo-kit cache root: `$URPO_KIT_CACHE`, else `~/.cache/urpo-kit` (XDG_CACHE_HOME respected)."""
    root = os.environ.get("URPO_KIT_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "urpo-kit"


def build_once(target: Path, build: Callable[[Path], object]) -> Path:
    """Return `target`, first calling `build(tmp_folder)` and renaming it into place if it does not exist yet.

    The existence check without the lock is the fast path (a rename is atomic, so an existing folder is
    complete). The slow path holds an exclusive flock on `<target>.lock`, so concurrent callers wait for the
    one that builds and then find the folder; temporary folders left by a killed builder are removed.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if the process dies
        if target.is_dir():
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache may be shared by several users
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
