"""Hugging Face datasets, loaded through `datasets.load_dataset` (imported lazily: it is slow to import).

Offline, `load_dataset` spends ~25 s in retries before it gives up, so the hub is probed first with one short
socket connect (cached per process). When the probe fails, or `HF_HUB_OFFLINE` is set, only the local cache is
tried, and a miss is a SourceUnavailable that names the dataset and the `--set source=...` override.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from urpo_kit.config.schema import Source
from urpo_kit.errors import SourceError, SourceUnavailable
from urpo_kit.sources.files import Rows

_TRUE = {"1", "true", "yes", "on"}
PROBE_TIMEOUT_S = 2.0


def offline_requested() -> bool:
    """The user's own switch, in the spellings huggingface_hub and datasets accept."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@lru_cache(maxsize=None)
def hub_reachable(endpoint: str | None = None) -> bool:
    """One TCP connect to the hub (or `HF_ENDPOINT`) with a short timeout.

    Behind an HTTPS proxy a direct connect says nothing, so the hub is assumed reachable there and the library's
    own error handling applies.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """Put huggingface_hub and datasets in offline mode for one call (both read the flag at import time)."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()


def _unavailable(source: Source, why: str) -> SourceUnavailable:
    return SourceUnavailable(
        f"hf:{source.hf}: dataset `{source.hf}` is not in the local cache and the Hugging Face Hub cannot be used "
        f"({why}); run once with network access to cache it, or override the source with a local copy, "
        "e.g. `--set 'source={path: data.jsonl}'` (relative to the working folder)"
    )


def _load(source: Source, streaming: bool) -> Any:
    import datasets

    return datasets.load_dataset(
        source.hf,
        source.config,
        split=source.split,
        data_files=source.data_files,
        revision=source.revision,
        streaming=streaming,
    )


def iter_hf(source: Source, *, stream: bool = False, progress: bool = False) -> Rows:
    """Rows of a hub dataset split; `stream` (honoured only online) avoids downloading a whole split for a head."""
    offline_env = offline_requested()
    online = not offline_env and hub_reachable()
    why = "HF_HUB_OFFLINE is set" if offline_env else "no connection to the hub"
    try:
        with _progress_bars(progress), (contextlib.nullcontext() if online else cache_only()):
            dataset = _load(source, streaming=stream and online)
    except ConnectionError as e:  # datasets' "Couldn't reach ... on the Hub", also its answer to a cache miss offline
        raise _unavailable(source, str(e) if online else why) from None
    except Exception as e:  # noqa: BLE001 - missing config/split, gated repo, bad data_files: all user-facing
        raise SourceError(f"hf:{source.hf}: {type(e).__name__}: {e}") from None
    return _rows(source, dataset)


def _rows(source: Source, dataset: Any) -> Rows:
    """Number the rows; a streamed dataset can still fail mid-way, which is reported like a failed load."""
    try:
        for number, row in enumerate(dataset, start=1):
            yield number, dict(row), None
    except ConnectionError as e:
        raise _unavailable(source, str(e)) from None
    except Exception as e:  # noqa: BLE001
        raise SourceError(f"hf:{source.hf}: {type(e).__name__}: {e}") from None
