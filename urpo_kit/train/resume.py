"""Run folders: what is written at the start (resolved recipe, versions, stream fingerprint) and what `--resume`
checks before continuing from the latest checkpoint.

The stream is a pure function of (recipe, task files, sources, position), and the Trainer restores its step and skips
the batches already consumed, so resuming continues the exact data order. What could silently break that is a changed
recipe or task file; a fingerprint of every episode of the stream, written at the start, catches both.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import logging
import platform
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from urpo_kit.config.schema import Recipe
from urpo_kit.errors import UrpoError

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
STREAM_FILE = "stream.json"
PACKAGES = ("urpo-kit", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "lm-eval", "vllm",
            "deepspeed")
CHECKPOINT = re.compile(r"checkpoint-\d+")  # what transformers names them
INCOMPLETE = "incomplete"  # where checkpoints cut short by a crash are set aside
# Recipe fields a resumed run may change: each is read afresh when the trainer is built, and none is part of the
# saved state (weights, optimizer, scheduler, data position). Any other change is refused, naming the field: the
# checkpoint's optimizer and scheduler would keep the old learning rate, a LoRA rank would not fit the saved
# adapter, a layout change would move the data positions.
APPLIED_ON_RESUME = ("grpo.logging_steps", "grpo.save_steps", "grpo.save_total_limit", "roles", "generation", "eval",
                     "output_dir", "allow_code", "accelerate_config", "model.gradient_checkpointing")


class ResumeError(UrpoError):
    """The run folder and the command line disagree about whether, or how, to continue."""


def checkpoints(run_dir: Path) -> list[Path]:
    """`checkpoint-N` folders, newest (highest N) first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=checkpoint_step, reverse=True)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[1])


def is_complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint cut short by a kill has none (or a truncated one)."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (what a resumed run continues from), or None."""
    return next((c for c in checkpoints(run_dir) if is_complete(c)), None)


def set_aside_incomplete(run_dir: Path) -> list[Path]:
    """Move checkpoints newer than the latest complete one into `incomplete/` (kept, never deleted), where neither
    the Trainer's checkpoint rotation (which counts every `checkpoint-*` beside the others) nor a later resume
    mistakes them for real ones; a name taken by an earlier crash gets a suffix. Returns where each went. Main
    process only."""
    latest = latest_checkpoint(run_dir)
    newer = [c for c in checkpoints(run_dir) if latest is None or checkpoint_step(c) > checkpoint_step(latest)]
    moved = []
    for c in newer:
        target = run_dir / INCOMPLETE / c.name
        target.parent.mkdir(exist_ok=True)
        for n in itertools.count(2):
            if not target.exists():
                break
            target = target.with_name(f"{c.name}.{n}")
        moved.append(c.rename(target))
    return moved


def fingerprint(records: list[dict[str, Any]]) -> str:
    """SHA-256 over every episode record, in order."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def write_run_info(run_dir: Path, recipe: Recipe, stream_info: dict[str, Any]) -> None:
    """The resolved recipe (re-loadable with `urpo-kit train`), package versions and the stream description."""
    run_dir.mkdir(parents=True, exist_ok=True)
    header = "# Resolved recipe of this run (defaults filled in, paths absolute); `urpo-kit train` accepts it.\n"
    (run_dir / RECIPE_FILE).write_text(header + yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    (run_dir / VERSIONS_FILE).write_text(json.dumps(versions(), indent=2) + "\n")
    (run_dir / STREAM_FILE).write_text(json.dumps(stream_info, indent=2) + "\n")


def check_resume(run_dir: Path, recipe: Recipe, stream_fingerprint: str, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh), refusing to mix two different runs in one folder."""
    checkpoint = latest_checkpoint(run_dir)
    if not resume:
        if checkpoint is not None:
            raise ResumeError(f"{run_dir} already holds checkpoints (latest {checkpoint.name}); continue it with "
                              "--resume, or set another output_dir")
        return None
    if checkpoint is None:
        log.warning("--resume: %s holds no complete checkpoint; starting from step 0", run_dir)
        return None
    saved_recipe = run_dir / RECIPE_FILE
    if saved_recipe.exists():
        changes = recipe_changes(yaml.safe_load(saved_recipe.read_text()) or {}, recipe.model_dump(mode="json"))
        refused = [c for c in changes if not c.startswith(APPLIED_ON_RESUME)]
        if refused:
            raise ResumeError(f"cannot resume {run_dir}: changed since the run started: {'; '.join(refused)}. "
                              f"A resumed run may change only {', '.join(APPLIED_ON_RESUME)}; start a new run "
                              "(another output_dir) for the rest")
        for change in changes:
            log.warning("resuming %s with a changed setting (applied): %s", run_dir, change)
    saved = run_dir / STREAM_FILE
    if saved.exists() and json.loads(saved.read_text()).get("fingerprint") != stream_fingerprint:
        raise ResumeError(f"cannot resume {run_dir}: the data stream differs from the one this run started with "
                          "(a task file or a source changed)")
    return checkpoint


def recipe_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`field: old -> new` for every field of the saved recipe whose value differs now (fields the saved recipe
    does not hold, from an older version, are not compared)."""
    changes = []
    for key, old in _dotted(saved).items():
        new = current
        for part in key.split(".") if key else ():
            new = new[int(part)] if isinstance(new, list) and int(part) < len(new) else \
                new.get(part) if isinstance(new, dict) else None
        if new != old:
            changes.append(f"{key}: {old!r} -> {new!r}")
    return changes


def _dotted(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested recipe as `a.b.0.c: value` leaves."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None or not value:
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, child in items:
        out.update(_dotted(child, f"{prefix}.{key}" if prefix else str(key)))
    return out
