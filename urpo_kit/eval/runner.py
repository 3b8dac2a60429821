"""Run an eval suite on an in-memory model: the one implementation behind `urpo-kit eval` and the trainer's
held-out evaluation.

The caller's state is left as found: the model goes back to train mode if it was training, nothing is recorded for
autograd, and the Python, NumPy and torch RNG states are restored (lm-eval seeds all three, which would otherwise
reset the trainer's sampling stream at every evaluation).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from urpo_kit.compiler import prepare_task
from urpo_kit.config.loader import folder_of, position_of
from urpo_kit.config.refs import located, require_named_files, written_overrides
from urpo_kit.config.suite import EvalSuite, PlayerBenchmark, RefereeBenchmark, WinRateBenchmark
from urpo_kit.errors import ConfigError, Problem, UrpoError
from urpo_kit.kinds import load_task
from urpo_kit.eval.lm_bridge import export_task, generation_kwargs, row_scores, run_lm_eval, sample_records
from urpo_kit.eval.progress import ProgressBackend
from urpo_kit.eval.report import SuiteResult, write_run
from urpo_kit.eval.referee_bench import load_preference_set, run_referee_benchmark
from urpo_kit.eval.stats import interval
from urpo_kit.eval.winrate import run_winrate
from urpo_kit.models import fast_inference
from urpo_kit.models.precision import cast_weights
from urpo_kit.recast import RenderError
from urpo_kit.referee import HFBackend
from urpo_kit.sources import describe_source

__all__ = ["evaluate_suite", "evaluation_state", "model_info", "run_suite"]


@contextlib.contextmanager
def evaluation_state(model: Any, precision: str = "model") -> Iterator[None]:
    """Eval mode without autograd for the duration, read at `precision` (LoRA layers on their fast no-gradient
    forward); afterwards the model's mode, weights and every RNG state as they were."""
    import numpy as np
    import torch

    was_training = model.training
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), read_precision(model, precision), \
            fast_inference(model):
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def read_precision(model: Any, precision: str) -> Iterator[None]:
    """`float32`: the model's half-precision weights and buffers are upcast for the duration and put back after
    (LoRA adapters are float32 already and untouched)."""
    import torch

    if precision == "model":
        yield
        return
    with cast_weights((*model.parameters(), *model.buffers()), torch.float32):
        yield


def model_info(model: Any) -> dict[str, Any]:
    """What results.json records about the model: its name or path, size and dtype."""
    config = getattr(model, "config", None)
    return {
        "name": str(getattr(config, "_name_or_path", "") or type(model).__name__),
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(getattr(model, "dtype", "")).removeprefix("torch."),
    }


def _key(text: str) -> str:
    """A metrics-key segment: lm-eval's `metric,filter` becomes `metric.filter`, other odd characters `_`."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text.replace(",", "."))


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default_name(bench: PlayerBenchmark | RefereeBenchmark | WinRateBenchmark) -> str:
    if bench.name:
        return bench.name
    if getattr(bench, "lm_eval", None):
        return str(bench.lm_eval)
    if bench.task is not None:
        return load_task(bench.task, written_overrides(bench)).name
    source = bench.source
    assert source is not None
    label = Path(source.path).name if source.path is not None else describe_source(source).rsplit("/", 1)[-1]
    return label.split(".")[0]


def benchmark_names(suite: EvalSuite) -> dict[str, list[str]]:
    """Each role's benchmark names (defaults filled in), checked for clashes before any model work starts."""
    names = {role: [_default_name(b) for b in getattr(suite, role)] for role in ("player", "referee", "winrate")}
    problems = []
    for role, role_names in names.items():
        for i, name in enumerate(role_names):
            if name in role_names[:i]:
                mark = position_of(suite, f"{role}.{i}")
                problems.append(Problem(mark.file, mark.line, mark.column, f"{role}.{i}.name",
                                        f"two {role} benchmarks are called `{name}`; set `name` on one of them"))
    if problems:
        raise ConfigError(problems)
    return names


def check_suite(suite: EvalSuite) -> None:
    """What can fail in a suite before any model loads: benchmark names, and each benchmark's task resolved, its rows
    read and its kind the one its section needs (a player benchmark runs a verifiable task, a referee benchmark a
    preference task, a win rate an open-ended one), each a located error."""
    require_named_files(suite)
    benchmark_names(suite)
    for section in ("player", "referee", "winrate"):
        for i, bench in enumerate(getattr(suite, section)):
            if bench.task is None:
                continue
            prepared = prepare_task(bench.task, written_overrides(bench), allow_code=suite.allow_code,
                                    limit=bench.limit or suite.limit)
            check_kind(suite, f"{section}.{i}.task", bench, prepared.task.kind)


def check_kind(suite: EvalSuite, field: str, bench: PlayerBenchmark | RefereeBenchmark | WinRateBenchmark,
               kind: str) -> None:
    """A located error at the suite field naming a task of the wrong kind for its benchmark."""
    if kind != bench.kind:
        raise located(suite, field, f"a `{field.split('.')[0]}` benchmark needs a {bench.kind} task; "
                                    f"{Path(str(bench.task)).name} is {kind}")


def _lm_eval_metrics(name: str, task_results: dict[str, Any], wanted: str | None) -> tuple[dict[str, float], str]:
    """Numeric `metric,filter` entries of one lm-eval task result, and the one reported as accuracy."""
    metrics = {k: float(v) for k, v in task_results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and "_stderr" not in k and "," in k}
    choice = wanted or next(iter(metrics), "")
    if choice not in metrics:
        raise UrpoError(f"player benchmark {name}: lm-eval reported no `{choice or 'metric'}`"
                        + (f"; it reported: {', '.join(metrics)}" if metrics else ""))
    return metrics, choice


def _player(bench: PlayerBenchmark, name: str, suite: EvalSuite, model: Any, tokenizer: Any,
            workdir: Path) -> tuple[dict[str, float], dict[str, Any]]:
    sampling = suite.sampling.params("player", bench.sampling)
    limit = bench.limit or suite.limit
    start = time.perf_counter()
    if bench.task is not None:
        prepared = prepare_task(bench.task, written_overrides(bench), allow_code=suite.allow_code, limit=limit)
        task_name = f"urpo-{name}"
        exported = export_task(prepared, workdir / "lm_eval_tasks" / name, name=task_name, sampling=sampling,
                               stop=bench.stop)
        results = run_lm_eval(model, tokenizer, [task_name], include_path=exported.folder,
                              batch_size=suite.batch_size)
        found, choice = results["results"][task_name], "accuracy,none"
        metrics = {"accuracy": found[choice], "extracted": found["extracted,none"]}
        detail: dict[str, Any] = {
            "task": str(bench.task), "source": prepared.rows.description, "task_folder": str(exported.folder),
            "rows": exported.rows, "data_sha256": _file_sha256(exported.data), "sampling": asdict(sampling)}
    else:
        task_name = str(bench.lm_eval)
        # the task's own generation settings, unless the suite sets sampling or stop sequences for it
        explicit = bool(bench.sampling.model_dump(exclude_none=True) or bench.stop)
        results = run_lm_eval(model, tokenizer, [task_name], include_path=None, batch_size=suite.batch_size,
                              limit=limit, num_fewshot=bench.num_fewshot, offline=False,
                              gen_kwargs=generation_kwargs(sampling, bench.stop) if explicit else None)
        found, choice = _lm_eval_metrics(name, results["results"][task_name], bench.metric)
        metrics = {"accuracy": found[choice], **{_key(k): v for k, v in found.items()}}
        detail = {"accuracy_metric": choice, "sampling": asdict(sampling) if explicit else "the task's own",
                  "rows": sum(int(v.get("effective", 0)) for v in results.get("n-samples", {}).values())}
    samples = results.pop("samples", {})
    files = []
    for task, records in samples.items():
        path = workdir / f"samples_{_key(task)}.jsonl"
        path.write_text("".join(line + "\n" for line in sample_records(records)), encoding="utf-8")
        files.append(path.name)
    scores = row_scores(samples, choice)
    metrics.update(_interval_metrics("accuracy", scores.values()))
    detail.update(name=name, lm_eval_task=task_name, metrics=metrics, row_scores=scores, samples_files=files,
                  seconds=time.perf_counter() - start, lm_eval=results)
    return metrics, detail


def _referee(bench: RefereeBenchmark, name: str, suite: EvalSuite, backend: HFBackend, workdir: Path,
             progress: bool) -> tuple[dict[str, float], dict[str, Any]]:
    start = time.perf_counter()
    data = load_preference_set(bench, name=name, limit=bench.limit or suite.limit,
                               suite_dir=folder_of(suite), allow_code=suite.allow_code)
    sampling = suite.sampling.params("referee", bench.sampling)
    result = run_referee_benchmark(data, ProgressBackend(backend, f"referee {name}", progress), order=bench.order,
                                   sampling=sampling, seed=suite.seed)
    log = workdir / f"referee_{name}.jsonl"
    _write_jsonl(log, result.log)
    scores = {str(entry["row"]): entry["score"] for entry in result.log}
    headline = {**result.metrics, **_interval_metrics("accuracy", scores.values())}
    metrics = dict(headline)
    if set(result.subsets) != {name}:
        metrics.update({f"subset/{_key(s)}": v["accuracy"] for s, v in result.subsets.items()})
    metrics.update({f"rewardbench/{_key(s)}": v for s, v in result.sections.items()})
    subsets = {s: {**v, **_interval_metrics("accuracy", [e["score"] for e in result.log if e["subset"] == s])}
               for s, v in result.subsets.items()}
    detail = {"name": name, "source": data.description, "order": bench.order, "mode": data.referee.mode,
              "candidates": bench.candidates, "sampling": asdict(sampling), "data_sha256": data.sha256(),
              "skipped": len(data.skipped), "skipped_reasons": [asdict(s) for s in data.skipped[:20]],
              "metrics": headline, "row_scores": scores, "subsets": subsets, "sections": result.sections,
              "log_file": log.name, "seconds": time.perf_counter() - start}
    return metrics, detail


def _winrate(bench: WinRateBenchmark, name: str, suite: EvalSuite, backend: HFBackend, model_name: str,
             workdir: Path, progress: bool) -> tuple[dict[str, float], dict[str, Any]]:
    from urpo_kit.models import load_model, load_tokenizer

    start = time.perf_counter()
    judge, judge_name = backend, f"self ({model_name})"
    if bench.judge is not None:
        judge = HFBackend(load_model(bench.judge), load_tokenizer(bench.judge), batch_size=suite.batch_size)
        judge_name = bench.judge.name
    player_sampling = suite.sampling.params("player", bench.sampling)
    judge_sampling = suite.sampling.params("referee", bench.judge_sampling)
    try:
        result = run_winrate(bench, player=ProgressBackend(backend, f"answers {name}", progress),
                             judge=ProgressBackend(judge, f"judge {name}", progress), judge_name=judge_name,
                             limit=bench.limit or suite.limit, player_sampling=player_sampling,
                             judge_sampling=judge_sampling, seed=suite.seed,
                             suite_dir=folder_of(suite), allow_code=suite.allow_code)
    except RenderError as e:
        if e.field not in ("reference", "difficulty"):
            raise
        field = f"winrate.{suite.winrate.index(bench)}.{e.field}"  # the suite's own templates: located there
        raise located(suite, field, str(e).removeprefix(f"{e.field}: ")) from None
    log = workdir / f"winrate_{name}.jsonl"
    _write_jsonl(log, result.log)
    scores = {str(entry["row"]): entry["outcome"] for entry in result.log}
    metrics = {**result.metrics, **_interval_metrics("win_rate", scores.values())}
    detail = {"name": name, "label": result.label, "task": str(bench.task), "judge": judge_name,
              "sampling": asdict(player_sampling), "judge_sampling": asdict(judge_sampling),
              "data_sha256": result.data_sha256, "metrics": metrics, "row_scores": scores, "log_file": log.name,
              "seconds": time.perf_counter() - start}
    return metrics, detail


def _interval_metrics(metric: str, scores: Collection[float]) -> dict[str, float]:
    """`<metric>_ci_low` and `<metric>_ci_high`, the 95% interval of a mean over its per-row scores (none without)."""
    if not scores:
        return {}
    low, high = interval(list(scores))
    return {f"{metric}_ci_low": low, f"{metric}_ci_high": high}


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records), encoding="utf-8")


def evaluate_suite(suite: EvalSuite, model: Any, tokenizer: Any, workdir: Path, *,
                   progress: bool = True) -> SuiteResult:
    """Every benchmark of the suite; per-sample logs go to `workdir`. The caller handles the model's state."""
    names = benchmark_names(suite)
    workdir.mkdir(parents=True, exist_ok=True)
    result = SuiteResult(suite, model_info(model), started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    start = time.perf_counter()
    # the model is fixed for the whole suite: a likelihood benchmark on prompts a sampled one judged re-reads them
    backend = HFBackend(model, tokenizer, batch_size=suite.batch_size, remember_next_token=True)
    for bench, name in zip(suite.player, names["player"]):
        metrics, detail = _player(bench, name, suite, model, tokenizer, workdir)
        result.metrics.update({f"player/{name}/{k}": v for k, v in metrics.items()})
        result.player.append(detail)
    for bench, name in zip(suite.referee, names["referee"]):
        metrics, detail = _referee(bench, name, suite, backend, workdir, progress)
        result.metrics.update({f"referee/{name}/{k}": v for k, v in metrics.items()})
        result.referee.append(detail)
    for bench, name in zip(suite.winrate, names["winrate"]):
        metrics, detail = _winrate(bench, name, suite, backend, result.model["name"], workdir, progress)
        result.metrics.update({f"winrate/{name}/{k}": v for k, v in metrics.items()})
        result.winrate.append(detail)
    result.seconds = time.perf_counter() - start
    result.metrics["eval/seconds"] = result.seconds
    return result


def run_suite(suite: EvalSuite, model: Any, tokenizer: Any, output_dir: Path | None = None, *,
              progress: bool = True) -> dict[str, float]:
    """Evaluate an in-memory model on a suite and return flat metrics (`player/<name>/accuracy`,
    `referee/<name>/accuracy`, ...); with `output_dir`, also write results.json, report.md, charts and logs there.

    Safe to call in the middle of training: see the module docstring for what is restored.
    """

    with evaluation_state(model, suite.precision):
        if output_dir is None:
            with tempfile.TemporaryDirectory(prefix="urpo-eval-") as tmp:
                return evaluate_suite(suite, model, tokenizer, Path(tmp), progress=progress).metrics
        result = evaluate_suite(suite, model, tokenizer, Path(output_dir), progress=progress)
    write_run(result, Path(output_dir))
    return result.metrics
