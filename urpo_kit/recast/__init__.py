"""Recasting: a source row becomes an Episode (chat messages + gold) through sandboxed Jinja2 templates.

The rendering machinery every prompt goes through: compiled templates, located render errors, chat messages, and
the referee's view of candidates (used by preference tasks, the self-referee and `urpo-kit judge`; the task kinds
in `urpo_kit.kinds` render their own rows with it). Referee prompts show candidates in a seeded shuffled order with labels, and the
permutation is kept so that a parsed ranking can be mapped back to the original candidates.
"""

from __future__ import annotations

import hashlib
import random
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import jinja2
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from urpo_kit.config.schema import RefereeSpec
from urpo_kit.errors import FieldError

BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_REFEREE_TEMPLATES = {
    "listwise": "referee/rank.j2",
    "pairwise": "referee/pair.j2",
    "pointwise": "referee/score.j2",
}
# The reply start that ends right where the verdict begins: what `verdict: likelihood` reads after when a referee
# prompt sets no prefill of its own (the shipped templates' answer lines start this way).
VERDICT_PREFILLS = {
    "listwise": "Ranking: [",
    "pairwise": "Ranking: [",
    "pointwise": "Score: ",
}


class RenderError(FieldError):
    """A template failed to compile or render; `field` is the task field (e.g. `player.prompt`)."""


@dataclass
class RefereeView:
    """A rendered referee prompt: `order[i]` is the original index of the candidate shown with `labels[i]`."""

    messages: list[dict[str, str]]
    labels: list[str]
    order: list[int]
    prefill: str = ""   # the reply's given start (the last, assistant, message); the model's text continues it

    def to_original(self, shown_ranking: Sequence[int]) -> list[int]:
        """Map a ranking over shown positions to a ranking over original candidate indices."""
        return [self.order[i] for i in shown_ranking]


def stable_seed(*parts: Any) -> int:
    """A seed derived from values, identical across processes and Python runs (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


MAX_LETTER_LABELS = 26


def make_labels(n: int, style: str = "numbers") -> list[str]:
    if style == "letters":
        if n > MAX_LETTER_LABELS:
            raise ValueError(f"letters allow at most {MAX_LETTER_LABELS} candidates, got {n}")
        return [chr(ord("A") + i) for i in range(n)]
    return [str(i + 1) for i in range(n)]


@lru_cache(maxsize=32)
def _environment(search_dirs: tuple[Path, ...]) -> ImmutableSandboxedEnvironment:
    """Sandboxed (templates come from users' YAML) and strict (a missing variable is an error, not '')."""
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        loader=jinja2.FileSystemLoader([str(d) for d in search_dirs]),
        keep_trailing_newline=False,
        autoescape=False,
    )


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
        self.env = _environment(self.search_dirs)

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
            source = found.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
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
            return template.render(variables)
        value = template(variables)
        _fail_on_undefined(value)
        return value
    except Exception as e:  # also a template calling a method on the wrong type, a bad index, ...
        if isinstance(e, jinja2.UndefinedError):
            message = f"undefined template variable: {e.message}"
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


class RefereeRenderer:
    """Renders referee prompts for a RefereeSpec: used by preference tasks, the self-referee and the Judge."""

    def __init__(self, spec: RefereeSpec, templates: Templates, *, field_prefix: str = "referee"):
        self.spec, self.mode, self.field_prefix = spec, spec.mode, field_prefix
        mode = spec.mode
        path = spec.template or Path(DEFAULT_REFEREE_TEMPLATES[mode])
        self.template = templates.file(path, f"{field_prefix}.template")
        self.system = templates.inline(spec.system, f"{field_prefix}.system") if spec.system else None
        self.prefill = spec.prefill or (VERDICT_PREFILLS[mode] if spec.verdict == "likelihood" else "")

    def check_prefill(self, view: RefereeView) -> None:
        """The prefill starts the reply that the template's answer line asks for, so it must appear in the prompt
        (e.g. `Ranking: [` for an answer line `Ranking: [1] > [2]`): a prefill the template does not ask for
        makes the model continue a reply it was never shown how to write."""
        start = view.prefill.strip()
        user = next((m["content"] for m in view.messages if m["role"] == "user"), "")
        if start and start not in user:
            raise RenderError(f"{self.field_prefix}.prefill", f"{view.prefill!r} does not appear in the rendered "
                              f"{self.template.name} (its answer line asks for another reply start)",
                              template_file=None)

    def render(self, prompt: str, candidates: Sequence[str], rng: random.Random | None,
               extra: dict[str, Any] | None = None) -> RefereeView:
        """Shuffle (when asked and an rng is given) and label the candidates, then render the referee messages."""
        order = list(range(len(candidates)))
        if self.spec.shuffle and rng is not None:
            rng.shuffle(order)
        return self.render_order(prompt, candidates, order, extra)

    def render_order(self, prompt: str, candidates: Sequence[str], order: list[int],
                     extra: dict[str, Any] | None = None) -> RefereeView:
        """Render with an explicit presentation order (e.g. the reverse order for `both_orders` debiasing)."""
        if sorted(order) != list(range(len(candidates))):
            raise ValueError(f"order {order} is not a permutation of the {len(candidates)} candidates")
        try:
            labels = make_labels(len(candidates), self.spec.labels)
        except ValueError as e:
            raise RenderError(f"{self.field_prefix}.labels", str(e)) from None
        shown = [{"label": lab, "text": candidates[i]} for lab, i in zip(labels, order)]
        variables = {**(extra or {}), "prompt": prompt, "candidates": shown, "labels": labels, "n": len(labels),
                     "scale": list(self.spec.scale)}
        user = render(self.template, variables, f"{self.field_prefix}.template")
        system = render(self.system, variables, f"{self.field_prefix}.system") if self.system else None
        return RefereeView(chat(system, user, self.prefill), labels, order, self.prefill)
