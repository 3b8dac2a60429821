"""The Jinja2 environment every template and expression runs in: sandboxed, strict, bounded in size, and reading
template files (`{% include %}`, `{% extends %}`, `{% import %}`) only under the rule of `urpo_kit.config.files`.

Jinja's sandbox blocks attribute tricks but not size: `{{ 'a' * 10**9 }}` allocates a gigabyte. Every value a
template builds passes through one of the hooks below (operators, calls, filters, namespace assignments, the
rendered output), and each refuses a string or list longer than MAX_RENDERED_CHARS, before building it where the
size is known in advance (repetition, padding widths, powers) and right after otherwise.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import jinja2
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

from urpo_kit.config import files

MAX_RENDERED_CHARS = 1_000_000  # one rendered prompt, gold or field value; far above any model's context
_MAX_POWER_BITS = 4096
_WIDTH_FUNCTIONS = {"center", "ljust", "rjust", "zfill", "expandtabs", "indent"}  # their int arguments are sizes
_WIDE_FORMAT = re.compile(r"%[-+ #0]*\d{7,}|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")  # `%9999999s`, `{:>9999999}`


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"{what}: a template may build strings and lists of at most {MAX_RENDERED_CHARS} items")


def checked(value: Any) -> Any:
    """`value`, if it is not a string or list beyond the limit."""
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_RENDERED_CHARS:
        raise _refuse(f"a value of {len(value)} items")
    return value


def _check_arguments(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        checked(value)
        if name in _WIDTH_FUNCTIONS and isinstance(value, int) and value > MAX_RENDERED_CHARS:
            raise _refuse(f"`{name}` to width {value}")
        if isinstance(value, str) and _WIDE_FORMAT.search(value) and name in ("format", "%"):
            raise _refuse("a format width above the limit")


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)  # keeps Jinja's pass_context / pass_environment markers
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(name, args, kwargs)
        return checked(fn(*args, **kwargs))

    return wrapper


class BoundedNamespace(Namespace):
    """`namespace()` whose attributes obey the size limit (a loop could otherwise double a string 30 times)."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, checked(value))


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with the size rule of the module docstring."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}
        self.globals["namespace"] = BoundedNamespace

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_RENDERED_CHARS:
                    raise _refuse(f"repeating {len(seq)} items {times} times")
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                and right * math.log2(abs(left)) > _MAX_POWER_BITS:
            raise SecurityError(f"{left} ** {right} is too large a number for a template")
        if operator == "%":
            _check_arguments("%", [left], {})
        return checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's form
        # `'{:>99999999}'.format(x)`: the format is the receiver (the sandbox wraps str.format, hence unwrap)
        receiver = getattr(inspect.unwrap(__obj), "__self__", None)
        _check_arguments(getattr(__obj, "__name__", ""), (receiver, *args), kwargs)
        return checked(super().call(__context, __obj, *args, **kwargs))


class ConfinedLoader(jinja2.BaseLoader):
    """Template files from `search_dirs`, read under the file rule for a task loaded from `base_dir`."""

    def __init__(self, search_dirs: Sequence[Path], base_dir: Path):
        self.search_dirs, self.base_dir = tuple(search_dirs), base_dir

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = jinja2.loaders.split_template_path(template)  # refuses `..`
        for folder in self.search_dirs:
            candidate = folder.joinpath(*pieces)
            if candidate.is_file():
                mtime = candidate.stat().st_mtime
                return read_template(candidate, self.base_dir), str(candidate), lambda: _unchanged(candidate, mtime)
        raise jinja2.TemplateNotFound(template)


def _unchanged(path: Path, mtime: float) -> bool:
    """Jinja keeps a loaded template while this holds; a changed file is read again, under the rule again."""
    try:
        return path.stat().st_mtime == mtime
    except OSError:
        return False


def read_template(path: Path, base_dir: Path) -> str:
    """A template file's text, under the file rule (FileRefused, OSError or UnicodeDecodeError otherwise)."""
    return files.read_bytes(files.confined(path, base_dir)).decode("utf-8")


def environment(search_dirs: Sequence[Path], base_dir: Path) -> BoundedEnvironment:
    """Sandboxed (templates come from users' YAML), strict (a missing variable is an error, not ''), bounded."""
    return BoundedEnvironment(undefined=StrictUndefined, loader=ConfinedLoader(search_dirs, base_dir),
                              keep_trailing_newline=False, autoescape=False)


def render_bounded(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render, stopping as soon as the output passes the limit (a loop of small pieces could be huge in all)."""
    out, size = [], 0
    for piece in template.generate(variables):
        size += len(piece)
        if size > MAX_RENDERED_CHARS:
            raise _refuse("the rendered text")
        out.append(piece)
    return "".join(out)
