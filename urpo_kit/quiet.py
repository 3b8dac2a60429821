"""A quiet console: third-party progress bars and info logging hidden while a command runs, unless `--verbose`.

Dataset split generation, weight loading, hub downloads and lm-eval's per-request bars would otherwise bury the
lines that matter (one per training step, the held-out table). Our own output is unaffected, and warnings and
errors of the libraries still show.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

__all__ = ["is_quiet", "quiet_libraries", "silent_tqdm"]

_quiet = False
LOGGERS = ("transformers", "datasets", "huggingface_hub", "trl", "accelerate", "peft", "lm_eval")


def is_quiet() -> bool:
    """Whether a command asked for a quiet console (and our own secondary bars should stay hidden too)."""
    return _quiet


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """For the duration (unless `verbose`): no progress bars from transformers, datasets and the hub, their loggers at
    WARNING; everything as it was afterwards."""
    global _quiet
    if verbose:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub
    import transformers

    bars = (transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
            not hub.are_progress_bars_disabled())
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    hub.disable_progress_bars()
    for name in LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
    _quiet = True
    try:
        yield
    finally:
        _quiet = False
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for enabled, enable in zip(bars, (transformers.utils.logging.enable_progress_bar,
                                          datasets.enable_progress_bars, hub.enable_progress_bars)):
            if enabled:
                enable()


@contextlib.contextmanager
def silent_tqdm(*modules: ModuleType) -> Iterator[None]:
    """While quiet, the `tqdm` these modules imported never draws, whatever `disable=` they pass (lm-eval passes its
    own); restored afterwards. A no-op on a verbose console."""
    if not _quiet:
        yield
        return
    saved = {module: module.tqdm for module in modules}
    try:
        for module, original in saved.items():
            module.tqdm = _silenced(original)
        yield
    finally:
        for module, original in saved.items():
            module.tqdm = original


def _silenced(tqdm_class: Any) -> Any:
    class Silent(tqdm_class):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    return Silent
