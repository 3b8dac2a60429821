"""The player side of `urpo-kit eval`: lm-eval, fed our verifiable tasks as generated task folders.

Export: each row is rendered by the task's own renderer (the exact chat messages training uses) into a jsonl with
`system`, `user` and `gold` columns; the generated task YAML reads it with `dataset_path: json` and an absolute
`data_files` path, turns `system` into the system message (`description: system`) and `user` into the user message,
generates with `generate_until`, and scores with a `process_results` that calls the task's own scorer.
Run: the model is handed to lm-eval's `HFLM` in memory with its tokenizer and batch size (`simple_evaluate` ignores
`batch_size` for a model object) and `apply_chat_template=True`, fully offline for exported tasks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from urpo_kit.compiler import PreparedTask
from urpo_kit.config.loader import origin_of
from urpo_kit.errors import UrpoError
from urpo_kit.kinds import Verifiable
from urpo_kit.quiet import silent_tqdm
from urpo_kit.referee import SamplingParams

__all__ = ["ExportedTask", "Scorer", "export_task", "generation_kwargs", "lm_eval_offline", "row_scores",
           "run_lm_eval", "sample_records"]

DATA_FILE = "data.jsonl"
TASK_FILE = "task.yaml"
UTILS_FILE = "utils.py"


class Scorer:
    """lm-eval `process_results` for an exported task: the task's own scorer (resolved extraction and verifier) on
    the one generation. `accuracy` is the verifier's score and `extracted` whether an answer could be extracted at
    all (the format rate)."""

    def __init__(self, task: Verifiable):
        self.task = task

    def __deepcopy__(self, memo: dict[int, Any]) -> "Scorer":
        """lm-eval deep-copies a task's config; the scorer holds no state (and compiled templates do not copy)."""
        return self

    def __call__(self, doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
        score = self.task.score_text(results[0], doc["gold"])
        return {"accuracy": score.metrics["player/accuracy"], "extracted": score.metrics["player/answer_rate"]}


# The scorers of the tasks exported in this process, by lm-eval task name: the generated `utils.py` looks its
# scorer up here, so names are resolved once, when the task was prepared, and never again from strings.
_SCORERS: dict[str, Scorer] = {}


def exported_scorer(name: str) -> Scorer:
    """The scorer of an exported task (called by its generated `utils.py`, in the process that exported it)."""
    try:
        return _SCORERS[name]
    except KeyError:
        raise UrpoError(f"lm-eval task `{name}` was exported by another process; export it again in this one") from None


@dataclass(frozen=True)
class ExportedTask:
    """An lm-eval task folder written from one of our tasks."""

    name: str               # the lm-eval task name
    folder: Path            # pass as TaskManager(include_path=...)
    data: Path              # the rendered rows
    rows: int


def generation_kwargs(sampling: SamplingParams, stop: Sequence[str]) -> dict[str, Any]:
    """lm-eval generation settings for our sampling: greedy at temperature 0 (lm-eval adds the eos stop itself)."""
    kwargs: dict[str, Any] = {"until": list(stop), "max_gen_toks": sampling.max_new_tokens}
    if sampling.temperature > 0:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
    else:
        kwargs.update(do_sample=False, temperature=0.0)
    return kwargs


def export_task(prepared: PreparedTask, folder: Path, *, name: str, sampling: SamplingParams,
                stop: Sequence[str] = ()) -> ExportedTask:
    """Write `folder/{data.jsonl, task.yaml, utils.py}` for a verifiable task whose rows are already loaded."""
    task = prepared.task
    if not isinstance(task, Verifiable):
        raise UrpoError(f"{origin_of(task.spec) or task.name}: a player benchmark needs a verifiable task, not "
                        f"{task.kind}")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / DATA_FILE
    with data.open("w", encoding="utf-8") as f:
        for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
            episode = task.episode(row, row_number=number)
            system = "".join(m["content"] for m in episode.messages if m["role"] == "system")
            record = {"system": system, "user": episode.messages[-1]["content"], "gold": episode.payload.gold,
                      "row": number}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    config = {
        "task": name,
        "dataset_path": "json",
        # the datasets cache stays in the run folder rather than in the user's home
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(folder / ".cache")},
        "test_split": "test",
        "output_type": "generate_until",
        "description": "system",  # a column name: lm-eval makes each row's `system` its system message
        "doc_to_text": "user",
        "doc_to_target": "gold",
        "generation_kwargs": generation_kwargs(sampling, stop),
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                        for m in ("accuracy", "extracted")],
        "metadata": {"version": 1.0, "source_task": task.name},
    }
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    (folder / TASK_FILE).write_text(text + "process_results: !function utils.process_results\n", encoding="utf-8")
    _SCORERS[name] = Scorer(task)
    (folder / UTILS_FILE).write_text(
        '"""Generated by urpo-kit: scores generations with the task\'s own extraction and verifier."""\n\n'
        "from urpo_kit.eval.lm_bridge import exported_scorer\n\n"
        f"process_results = exported_scorer({json.dumps(name)})\n",
        encoding="utf-8",
    )
    return ExportedTask(name, folder, data, len(prepared.rows.rows))


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables set for the duration, then restored (or removed) as they were."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def lm_eval_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for the run, in the environment and in the already-imported libraries."""
    from urpo_kit.sources.hf import cache_only  # the libraries read the flags at import time; this patches them

    with _environ(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"), cache_only():
        yield


def run_lm_eval(model: Any, tokenizer: Any, tasks: Sequence[str], *, include_path: Path | None,
                batch_size: int, limit: int | None = None, num_fewshot: int | None = None,
                gen_kwargs: dict[str, Any] | None = None, offline: bool = True) -> dict[str, Any]:
    """lm-eval's result dict (with per-sample logs under `samples`) for an in-memory model.

    lm-eval's built-in task index takes ~20 s to build, so it is only read when a task is not one of ours.
    Every process of a distributed run evaluates everything (lm-eval treats a model object as single-process), so
    LOCAL_RANK reads 0 during the call: lm-eval would otherwise return None on all but local rank 0.
    """
    import lm_eval.api.model
    import lm_eval.api.task
    import lm_eval.models.huggingface
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    bars = silent_tqdm(lm_eval.api.model, lm_eval.api.task, lm_eval.models.huggingface)  # its per-request bars
    with lm_eval_offline() if offline else contextlib.nullcontext(), _environ(LOCAL_RANK="0"), _quiet_lm_eval(), bars:
        manager = TaskManager(include_path=str(include_path) if include_path else None,
                              include_defaults=include_path is None)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        return simple_evaluate(model=lm, tasks=list(tasks), task_manager=manager, limit=limit,
                               num_fewshot=num_fewshot, gen_kwargs=gen_kwargs, apply_chat_template=True,
                               log_samples=True)


@contextlib.contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval warns on every call that an in-memory model skips its loading options, which is what we intend;
    its warnings would bury the training log. Errors still show."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def row_scores(samples: dict[str, list[dict[str, Any]]], metric: str) -> dict[str, float]:
    """Per-document scores of one lm-eval `metric,filter` from its sample logs, keyed by doc id (`task/doc id` when
    several tasks ran), for intervals and paired comparisons; empty when the metric is not a per-document number in
    [0, 1] (a corpus-level metric such as BLEU, or a perplexity)."""
    name, _, filter_key = metric.partition(",")
    scores = {}
    for task, records in samples.items():
        for record in records:
            if record.get("filter") != filter_key:
                continue
            value = record.get(name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                return {}
            scores[f"{task}/{record['doc_id']}" if len(samples) > 1 else str(record["doc_id"])] = float(value)
    return scores


def sample_records(samples: list[dict[str, Any]]) -> Iterator[str]:
    """lm-eval's per-sample log as jsonl lines (documents hold no tensors, but keep anything odd printable)."""
    for sample in samples:
        yield json.dumps(sample, ensure_ascii=False, default=str)
