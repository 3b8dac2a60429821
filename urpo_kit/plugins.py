"""Resolve a user's `pkg.mod:fn` dotted path: the one plugin loader, shared by verifiers and generators (it sits
below both, importing nothing of the package but its errors).

Importing a module runs its code, so it happens only when the user said so (`--allow-code` / `allow_code: true`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from urpo_kit.errors import CodeNotAllowed


def is_dotted_path(spec: str) -> bool:
    """True for `pkg.mod:fn` specs (the colon is what separates user code from built-in names)."""
    return ":" in spec


def resolve_callable(spec: str, *, allow_code: bool, what: str) -> Callable[..., Any]:
    """Import `pkg.mod:attr[.attr]` and return the callable; `what` names the role in messages (e.g. "verifier")."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path or ":" in attr_path:
        raise ValueError(f"{what} `{spec}`: a dotted path must look like `package.module:function`")
    if not allow_code:
        raise CodeNotAllowed(
            f"{what} `{spec}` runs your own Python code; allow it with `--allow-code` on the command line "
            "or `allow_code: true` in the recipe"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # any import-time failure of user code is a configuration problem
        raise ValueError(f"{what} `{spec}`: cannot import module `{module_name}`: {type(e).__name__}: {e}") from e
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what} `{spec}`: module `{module_name}` has no attribute `{attr_path}`") from None
    if not callable(obj):
        raise ValueError(f"{what} `{spec}`: `{attr_path}` is a {type(obj).__name__}, not a callable")
    return obj
