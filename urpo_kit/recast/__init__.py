"""Recasting: the rendering machinery every prompt goes through, through sandboxed, strict Jinja2 templates.

Compiled templates (inline, files, expressions) with errors tagged by the task field they came from, rendering with
located errors, chat messages, and stable seeds. The task kinds (`urpo_kit.kinds`) render their rows with it, and
the referee's view of candidates (`urpo_kit.referee.view`) its prompts.
"""

from __future__ import annotations

import hashlib
import traceback
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from urpo_kit.config.files import BUILTIN_TEMPLATES, FileRefused
from urpo_kit.errors import FieldError, undefined_hint
from urpo_kit.recast.sandbox import BoundedEnvironment, checked, environment, read_template, render_bounded


class RenderError(FieldError):
    """A template failed to compile or render; `field` is the task field (e.g. `player.prompt`)."""


def stable_seed(*parts: Any) -> int:
    """A seed derived from values, identical across processes and Python runs (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


@lru_cache(maxsize=32)
def _environment(search_dirs: tuple[Path, ...], base_dir: Path) -> BoundedEnvironment:
    return environment(search_dirs, base_dir)


def template_search_dirs(base_dir: Path | None) -> tuple[Path, ...]:
    """Where template files are looked up: the YAML's folder, a `templates/` folder beside it, then the built-ins."""
    dirs: list[Path] = []
    if base_dir is not None:
        dirs += [base_dir, base_dir / "templates", base_dir.parent / "templates"]
    dirs.append(BUILTIN_TEMPLATES)
    return tuple(d for d in dict.fromkeys(dirs) if d.is_dir())


class Templates:
    """Compiles inline templates, template files and expressions once, with errors tagged by task field."""

    def __init__(self, base_dir: Path | None):
        self.search_dirs = template_search_dirs(base_dir)
        self.base_dir = base_dir or BUILTIN_TEMPLATES  # what template files may be read from (config.files)
        self.env = _environment(self.search_dirs, self.base_dir)

    def find(self, path: Path, field_name: str) -> Path:
        candidates = [path] if path.is_absolute() else [d / path for d in self.search_dirs]
        for c in candidates:
            if c.is_file():
                return c
        looked = ", ".join(str(c) for c in candidates)
        raise RenderError(field_name, f"template file `{path}` not found (looked in: {looked})")

    def inline(self, source: str, field_name: str) -> jinja2.Template:
        try:
            return self.env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise RenderError(field_name, f"template syntax error: {e.message}", template_line=e.lineno) from None

    def file(self, path: Path, field_name: str) -> jinja2.Template:
        found = self.find(path, field_name)
        try:
            source = read_template(found, self.base_dir)
        except (OSError, UnicodeDecodeError, FileRefused) as e:
            raise RenderError(field_name, f"cannot read template file `{found}`: {e}", template_file=found) from None
        try:
            # compiled with its real filename, so a runtime error's traceback carries the template line
            code = self.env.compile(source, name=str(path), filename=str(found))
        except jinja2.TemplateSyntaxError as e:
            raise RenderError(field_name, f"template syntax error: {e.message}", template_file=found,
                              template_line=e.lineno) from None
        template = self.env.template_class.from_code(self.env, code, self.env.make_globals(None))
        template.urpo_file = found  # type: ignore[attr-defined]
        return template

    def expression(self, source: str, field_name: str):
        try:
            return self.env.compile_expression(source, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as e:
            raise RenderError(field_name, f"expression syntax error: {e.message}") from None


def render(template: Any, variables: dict[str, Any], field_name: str, row_number: int | None = None) -> Any:
    """Render a template (or evaluate an expression), turning Jinja errors into a located RenderError.

    Variables go in as one mapping (a column may be called `self`); an expression whose value is (or holds) an
    undefined variable fails here, naming its own field, instead of later in whichever template uses it.
    """
    try:
        if isinstance(template, jinja2.Template):
            return render_bounded(template, variables)
        value = checked(template(variables))
        _fail_on_undefined(value)
        return value
    except Exception as e:  # also a template calling a method on the wrong type, a bad index, ...
        if isinstance(e, jinja2.UndefinedError):
            message = f"undefined template variable: {e.message}{undefined_hint(e.message, variables)}"
        elif isinstance(e, jinja2.TemplateError):
            message = f"template error: {e}"
        else:
            message = f"{type(e).__name__}: {e}"
        raise RenderError(field_name, message, row_number=row_number, template_file=_filename(template),
                          template_line=_template_line(template, e)) from None


def _fail_on_undefined(value: Any, depth: int = 0) -> None:
    """Raise the UndefinedError of an undefined value, also inside the lists and mappings an expression builds."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if depth < 4 and isinstance(value, (list, tuple)):
        for item in value:
            _fail_on_undefined(item, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for item in value.values():
            _fail_on_undefined(item, depth + 1)


def _filename(template: Any) -> Path | None:
    """The template file a template came from; None for inline templates and expressions."""
    return getattr(template, "urpo_file", None)


def _template_line(template: Any, error: BaseException) -> int | None:
    """The line inside the template where rendering failed (Jinja rewrites tracebacks to template lines)."""
    name = getattr(template, "filename", None)
    if not isinstance(template, jinja2.Template) or not name:
        return None
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == name:
            line = lineno
    return line


def chat(system: str | None, user: str, prefill: str | None = None) -> list[dict[str, str]]:
    """Chat messages; a prefill becomes a final assistant message that generation continues."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return messages
