"""Recasting: a source row becomes an Episode (chat messages + gold) through sandboxed Jinja2 templates.

This is where every prompt is rendered: the player's (verifiable, open-ended) and the referee's (preference tasks,
the self-referee, `urpo-kit judge`). Referee prompts show candidates in a seeded shuffled order with labels, and the
permutation is kept so that a parsed ranking can be mapped back to the original candidates.
"""

from __future__ import annotations

import hashlib
import json
import random
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import jinja2

from urpo_kit.config.files import BUILTIN_TEMPLATES, FileRefused
from urpo_kit.config.schema import (
    OpenEndedTask,
    PreferenceTask,
    Prompt,
    RefereePrompt,
    TaskSpec,
    VerifiableTask,
)
from urpo_kit.errors import UrpoError
from urpo_kit.recast.sandbox import BoundedEnvironment, checked, environment, read_template, render_bounded

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


class RenderError(UrpoError):
    """A template failed on a row. `field` is the task field (e.g. `player.prompt`) so the caller can locate it."""

    def __init__(self, field: str, message: str, *, template_file: Path | None = None,
                 template_line: int | None = None, row_number: int | None = None):
        self.field, self.message = field, message
        self.template_file, self.template_line, self.row_number = template_file, template_line, row_number
        where = f" (row {row_number})" if row_number is not None else ""
        super().__init__(f"{field}: {message}{where}")


@dataclass
class Episode:
    """One training or evaluation prompt: what the model sees, and what it is scored against.

    gold: verifiable -> the gold answer string; preference -> the gold ranking as shown-label indices (best first);
    open_ended -> None (the self-referee provides the signal).
    """

    task: str
    kind: str
    messages: list[dict[str, str]]
    gold: str | list[int] | None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Flat, schema-stable record for a `datasets.Dataset` (TRL passes extra columns to reward functions)."""
        return {
            "prompt": self.messages,
            "task": self.task,
            "kind": self.kind,
            "gold": json.dumps(self.gold),
            "meta": json.dumps(self.meta, sort_keys=True, default=str),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Episode":
        return cls(record["task"], record["kind"], list(record["prompt"]), json.loads(record["gold"]),
                   json.loads(record["meta"]))


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
    """Renders referee prompts for a RefereePrompt spec: used by preference tasks, the self-referee and judge."""

    def __init__(self, spec: RefereePrompt, templates: Templates, *, mode: str = "listwise", field_prefix: str = "referee"):
        self.spec, self.mode, self.field_prefix = spec, mode, field_prefix
        path = spec.template or Path(DEFAULT_REFEREE_TEMPLATES[mode])
        self.template = templates.file(path, f"{field_prefix}.template")
        self.system = templates.inline(spec.system, f"{field_prefix}.system") if spec.system else None
        self.prefill = spec.prefill or (VERDICT_PREFILLS[mode] if spec.verdict == "likelihood" else "")

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


class TaskRenderer:
    """Turns the rows of one task into Episodes; compiles every template up front so syntax errors surface early."""

    def __init__(self, task: TaskSpec, base_dir: Path | None):
        self.task = task
        self.templates = Templates(base_dir)
        t = self.templates
        self.fields = {name: t.expression(expr, f"fields.{name}") for name, expr in task.fields.items()}
        if isinstance(task, (VerifiableTask, OpenEndedTask)):
            self.player_system, self.player_user = self._prompt(task.player, "player")
        if isinstance(task, VerifiableTask):
            self.gold = t.inline(task.answer.gold, "answer.gold")
        if isinstance(task, PreferenceTask):
            if task.min_candidates > task.max_candidates:
                raise RenderError("min_candidates", f"min_candidates={task.min_candidates} is above "
                                  f"max_candidates={task.max_candidates}")
            if task.referee.labels == "letters" and task.max_candidates > MAX_LETTER_LABELS:
                raise RenderError("referee.labels", f"letters label at most {MAX_LETTER_LABELS} candidates; "
                                  f"lower max_candidates ({task.max_candidates}) or use numbers")
            self.question = t.inline(task.prompt, "prompt")
            self.candidates = t.expression(task.candidates, "candidates")
            self.referee = RefereeRenderer(task.referee, t)
        if isinstance(task, OpenEndedTask):
            self.self_referee = RefereeRenderer(task.self_referee, t, mode=task.self_referee.mode,
                                                field_prefix="self_referee")

    def _prompt(self, prompt: Prompt, prefix: str):
        t = self.templates
        system = t.inline(prompt.system, f"{prefix}.system") if prompt.system else None
        user = (t.inline(prompt.prompt, f"{prefix}.prompt") if prompt.prompt is not None
                else t.file(prompt.template, f"{prefix}.template"))
        return system, user

    def variables(self, row: dict[str, Any], row_number: int | None = None) -> dict[str, Any]:
        """Raw columns plus the task's `fields` expressions evaluated over them."""
        out = dict(row)
        for name, expr in self.fields.items():
            out[name] = render(expr, row, f"fields.{name}", row_number)
        return out

    def player_messages(self, variables: dict[str, Any], row_number: int | None = None) -> list[dict[str, str]]:
        field_user = "player.prompt" if self.task.player.prompt is not None else "player.template"
        user = render(self.player_user, variables, field_user, row_number)
        if not str(user).strip():  # the model would be trained on an empty question
            raise RenderError(field_user, "the prompt renders empty", row_number=row_number)
        system = render(self.player_system, variables, "player.system", row_number) if self.player_system else None
        return chat(system, user)

    def gold_answer(self, variables: dict[str, Any], row_number: int | None = None) -> str:
        gold = str(render(self.gold, variables, "answer.gold", row_number)).strip()
        if not gold:
            raise RenderError("answer.gold", "the gold answer renders empty", row_number=row_number)
        return gold

    def ranked_candidates(self, variables: dict[str, Any], row_number: int | None = None) -> list[str]:
        task = self.task
        value = render(self.candidates, variables, "candidates", row_number)
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise RenderError("candidates", f"must give a list of strings, got {type(value).__name__}", row_number=row_number)
        if not task.min_candidates <= len(value) <= task.max_candidates:
            raise RenderError("candidates", f"{len(value)} candidates, expected {task.min_candidates}..{task.max_candidates}",
                              row_number=row_number)
        if len(set(value)) != len(value):
            raise RenderError("candidates", "two candidates are identical, so the gold order is ambiguous", row_number=row_number)
        return list(value)

    def episode(self, row: dict[str, Any], *, row_number: int | None = None, seed: int = 0,
                position: int | None = None) -> Episode:
        """Render one row. `seed` and `position` fix the referee's candidate shuffle reproducibly."""
        task = self.task
        variables = self.variables(row, row_number)
        meta: dict[str, Any] = {"row": row_number, "position": position}
        if isinstance(task, VerifiableTask):
            return Episode(task.name, task.kind, self.player_messages(variables, row_number),
                           self.gold_answer(variables, row_number), meta)
        if isinstance(task, OpenEndedTask):
            messages = self.player_messages(variables, row_number)
            meta["instruction"] = messages[-1]["content"]
            return Episode(task.name, task.kind, messages, None, meta)
        question = str(render(self.question, variables, "prompt", row_number))
        ranked = self.ranked_candidates(variables, row_number)
        view = self.referee.render(question, ranked, random.Random(stable_seed(seed, task.name, row_number, position)))
        # gold ranking over shown positions: where the best original candidate is shown, then the second best, ...
        gold = [view.order.index(i) for i in range(len(ranked))]
        meta.update(labels=view.labels, order=view.order, n=len(ranked), prefill=view.prefill)
        return Episode(task.name, task.kind, view.messages, gold, meta)
