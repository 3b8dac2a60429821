"""The referee as a reward model for other pipelines: batch judging of files (`urpo-kit judge`), an HTTP server
(`urpo-kit serve`) and a TRL reward-function adapter (`reward_function`).

Names are imported on first use (PEP 562), so that the CLI can register its commands from
`urpo_kit.serve.commands` without paying for pydantic schemas, torch or FastAPI at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "reward_function": "urpo_kit.serve.reward",
    "JudgeRequest": "urpo_kit.serve.api",
    "JudgeResponse": "urpo_kit.serve.api",
    "JudgeResult": "urpo_kit.referee.rows",
    "JudgeRow": "urpo_kit.referee.rows",
    "RowInput": "urpo_kit.referee.rows",
    "JudgeSettings": "urpo_kit.serve.settings",
    "load_backend": "urpo_kit.serve.settings",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
