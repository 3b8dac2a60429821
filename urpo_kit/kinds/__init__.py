"""Task kinds, one module each, and the one registry that names them.

Adding a kind: a module with its schema model (a `TaskBase` with a `kind` literal), its payload and its
`ResolvedTask`, and one line in `KINDS`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field

from urpo_kit.config.loader import Overrides, folder_of, load_model, locate
from urpo_kit.config.schema import Strict, TaskBase
from urpo_kit.errors import ConfigError, FieldError
from urpo_kit.kinds.base import Completion, Episode, LogMetric, Payload, ResolvedTask, Score, prompt_groups
from urpo_kit.kinds.open_ended import OpenEnded, OpenEndedEpisode, OpenEndedTask, SelfRefereeSpec
from urpo_kit.kinds.preference import Preference, PreferenceEpisode, PreferenceTask
from urpo_kit.kinds.verifiable import Verifiable, VerifiableEpisode, VerifiableTask
from urpo_kit.recast import Templates

# kind name -> (schema model, resolved task class)
KINDS: dict[str, tuple[type[TaskBase], type[ResolvedTask[Any]]]] = {
    "verifiable": (VerifiableTask, Verifiable),
    "preference": (PreferenceTask, Preference),
    "open_ended": (OpenEndedTask, OpenEnded),
}

TaskSpec = Annotated[Union[tuple(spec for spec, _ in KINDS.values())], Field(discriminator="kind")]  # type: ignore[valid-type]


class TaskFile(Strict):
    """Wrapper so that one model validates any kind of task with field paths that start at the file's root."""

    task: TaskSpec


def load_task(path: str | os.PathLike[str], overrides: Overrides = ()) -> TaskBase:
    """A task YAML as its kind's schema model, with located errors and resolved paths."""
    return load_model(TaskFile, path, overrides, wrap="task")


def build(spec: TaskBase, base_dir: Path | None, *, allow_code: bool = False) -> ResolvedTask[Any]:
    """The task resolved with its templates looked up from `base_dir`; a problem is a FieldError naming the field."""
    return KINDS[spec.kind][1](spec, Templates(base_dir), allow_code=allow_code)


def resolve(spec: TaskBase, *, allow_code: bool = False) -> ResolvedTask[Any]:
    """A loaded task with every name looked up and every template compiled, or a ConfigError located in its file."""
    try:
        return build(spec, folder_of(spec), allow_code=allow_code)
    except FieldError as e:
        raise ConfigError(locate(spec, e)) from None


def episode_from_record(record: dict[str, Any]) -> Episode[Any]:
    """The Episode a `to_record` record holds (as TRL hands the dataset's columns to reward functions)."""
    data = json.loads(record["episode"])
    payload_type = KINDS[record["kind"]][1].payload_type
    return Episode(record["task"], list(record["prompt"]), payload_type(**data["payload"]), data["row"],
                   data["position"], data["epoch"])


__all__ = [
    "KINDS",
    "Completion",
    "Episode",
    "LogMetric",
    "OpenEnded",
    "OpenEndedEpisode",
    "OpenEndedTask",
    "Payload",
    "Preference",
    "PreferenceEpisode",
    "PreferenceTask",
    "ResolvedTask",
    "Score",
    "SelfRefereeSpec",
    "TaskFile",
    "TaskSpec",
    "Verifiable",
    "VerifiableEpisode",
    "VerifiableTask",
    "build",
    "episode_from_record",
    "load_task",
    "prompt_groups",
    "resolve",
]
