"""Agreement with lm-eval itself: one of our tasks through `run_suite`, and the very task folder it exported through
`lm_eval.simple_evaluate` called directly, on the same in-memory model; same score, same generations, and the
wall-time ratio of the two (what urpo-kit's export, state handling and reports cost on top of lm-eval).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from urpo_kit.config.schema import EvalRoles, Sampling
from urpo_kit.config.suite import EvalSuite, PlayerBenchmark
from urpo_kit.eval.lm_bridge import lm_eval_offline
from urpo_kit.eval.runner import run_suite

__all__ = ["Agreement", "direct_lm_eval", "lm_eval_agreement"]


@dataclass
class Agreement:
    ours: float                      # accuracy through run_suite
    direct: float                    # accuracy through lm_eval.simple_evaluate
    same_samples: bool               # every sample's generation and per-sample scores identical
    ours_seconds: list[float] = field(default_factory=list)
    direct_seconds: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median wall time through urpo-kit over median wall time of lm-eval alone."""
        return statistics.median(self.ours_seconds) / statistics.median(self.direct_seconds)


def direct_lm_eval(model: Any, tokenizer: Any, task_folder: Path, task_name: str, *, batch_size: int,
                   limit: int) -> dict[str, Any]:
    """What a user of lm-eval would write for the exported task folder."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with lm_eval_offline():
        manager = TaskManager(include_path=str(task_folder), include_defaults=False)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        return simple_evaluate(model=lm, tasks=[task_name], task_manager=manager, limit=limit,
                               apply_chat_template=True, log_samples=True)


def _per_sample(samples: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((s["doc_id"], s["filtered_resps"], s["accuracy"], s["extracted"]) for s in samples)


def _warm_up(model: Any, tokenizer: Any) -> None:
    """Pay the one-time costs (lm-eval's imports, the first forward pass) before anything is timed."""
    import lm_eval.evaluator  # noqa: F401
    import lm_eval.models.huggingface  # noqa: F401
    import lm_eval.tasks  # noqa: F401

    from urpo_kit.referee import HFBackend, SamplingParams

    HFBackend(model, tokenizer).generate([[{"role": "user", "content": "Hi"}]], SamplingParams(0.0, 1.0, 4))


def lm_eval_agreement(task: Path, overrides: dict[str, Any], model: Any, tokenizer: Any, workdir: Path, *,
                      name: str = "agreement", limit: int = 20, max_new_tokens: int = 64, batch_size: int = 20,
                      repeats: int = 1) -> Agreement:
    """Run both ways `repeats` times, alternating (urpo-kit first, since it writes the task folder lm-eval reads)."""
    import json

    _warm_up(model, tokenizer)
    suite = EvalSuite(name=name, player=[PlayerBenchmark(task=task, name=name, overrides=overrides)], limit=limit,
                      batch_size=batch_size,
                      sampling=EvalRoles(player=Sampling(max_new_tokens=max_new_tokens)))
    result: Agreement | None = None
    for r in range(repeats):
        run_dir = workdir / f"urpo-{r}"
        start = time.perf_counter()
        ours = run_suite(suite, model, tokenizer, run_dir, progress=False)
        ours_seconds = time.perf_counter() - start
        task_name = f"urpo-{name}"
        start = time.perf_counter()
        direct = direct_lm_eval(model, tokenizer, run_dir / "lm_eval_tasks" / name, task_name,
                                batch_size=batch_size, limit=limit)
        direct_seconds = time.perf_counter() - start
        if result is None:
            logged = [json.loads(line) for line in (run_dir / f"samples_{task_name}.jsonl").read_text().splitlines()]
            result = Agreement(ours[f"player/{name}/accuracy"], direct["results"][task_name]["accuracy,none"],
                               _per_sample(logged) == _per_sample(direct["samples"][task_name]))
        result.ours_seconds.append(ours_seconds)
        result.direct_seconds.append(direct_seconds)
    assert result is not None, "repeats must be at least 1"
    return result
