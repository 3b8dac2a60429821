"""The self-referee inside training: the current model ranks its own G answers to each open-ended prompt.

One `Judge` per open-ended task (its template, mode, debias, samples and sampling over the recipe's referee role),
all sharing one backend that is bound to the trainer once it exists. Per step and per process, every open-ended
task's judge is called exactly once, with all of that task's groups in the batch, even when it has none: generation
under DeepSpeed ZeRO-3 and FSDP is collective (transformers sets `synced_gpus`, and the parameter gather of TRL's
unwrap helper is one too), so every rank must make the same calls in the same order. A rank with nothing to judge
generates one token from a one-character prompt instead of skipping; with the HF backend every call is one
`generate` over all prompts, so the number of `generate` calls per step never depends on the data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from urpo_kit.config.loader import origin_of
from urpo_kit.config.schema import Recipe
from urpo_kit.errors import UrpoError
from urpo_kit.kinds import OpenEnded
from urpo_kit.referee import (
    Backend,
    HFBackend,
    Judge,
    SamplingParams,
    VLLMColocateBackend,
    VLLMServerBackend,
)
from urpo_kit.referee.backends import Messages

if TYPE_CHECKING:
    from trl import GRPOTrainer

PING: Messages = [{"role": "user", "content": "."}]


class StepBackend:
    """The backend the self-referee calls: bound to the trainer after it is built, and never skips a call."""

    def __init__(self, inner: Backend | None = None):
        self.inner = inner
        self.calls = 0

    def bind(self, inner: Backend) -> None:
        self.inner = inner

    def _bound(self) -> Any:
        if self.inner is None:
            raise RuntimeError("the self-referee backend is not bound to a trainer yet")
        return self.inner

    @property
    def tokenizer(self) -> Any:
        return self._bound().tokenizer

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        inner = self._bound()
        self.calls += 1
        if not prompts:
            inner.generate([PING], dataclasses.replace(sampling, max_new_tokens=1))
            return []
        return inner.generate(prompts, sampling)

    def next_token_logprobs(self, prompts: Sequence[Messages], token_ids: Sequence[Sequence[int]]) -> list[list[float]]:
        """Likelihood verdicts: one forward pass; a rank with nothing to judge still runs one (on PING)."""
        inner = self._bound()
        self.calls += 1
        if not prompts:
            inner.next_token_logprobs([PING], [[0]])
            return []
        return inner.next_token_logprobs(prompts, token_ids)


class SelfReferee:
    """The judges of a run's open-ended tasks, one per task, over one backend bound to the trainer's model; `bind`
    hands each judge to its task's scorer, which calls it once per step (with all its groups, or none)."""

    def __init__(self, tasks: Sequence[OpenEnded], recipe: Recipe, backend: StepBackend | None = None):
        self.backend = backend or StepBackend()
        self.judges: dict[str, Judge] = {}
        for task in tasks:
            spec = task.spec
            where = origin_of(spec) or spec.name
            if spec.self_referee.verdict == "likelihood" and recipe.generation.backend != "hf":
                raise UrpoError(f"{where}: self_referee.verdict: likelihood reads label probabilities from the "
                                "training model, which needs generation.backend: hf (it is "
                                f"{recipe.generation.backend}); use verdict: sample with vLLM")
            if spec.self_referee.train_judgments:
                raise UrpoError(f"{where}: self_referee.train_judgments is not supported by this trainer yet (the "
                                "paper does not train the self-referee's judgments)")
            self.judges[task.name] = Judge(
                self.backend, spec.self_referee, sampling=recipe.roles.params("referee", spec.self_referee.sampling),
                renderer=task.referee, seed=recipe.seed)
            task.judge = self.judges[task.name].judge

    def check(self, group_size: int) -> None:
        """Start-up check of likelihood judges (labels or scores one token each), once the backend is bound."""
        for judge in self.judges.values():
            if judge.verdict == "likelihood":
                judge.check(group_size)


# ------------------------------------------------------------------------------------------------ trainer backends
def generation_context(trainer: GRPOTrainer) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The trainer's model in generation form, as TRL itself gets it before `generate` (DDP, ZeRO-3, FSDP)."""
    from trl.distributed import DistributedBackend
    from trl.models import unwrap_model_for_generation

    @contextlib.contextmanager
    def unwrap() -> Iterator[Any]:
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped,
                trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
            ) as model,
            DistributedBackend(trainer.accelerator).summon_full_params(trainer.model_wrapped, recurse=False),
        ):
            yield model

    return unwrap


class MainProcessBackend:
    """Gather every rank's prompts, generate on the main process (the only one holding TRL's vLLM client), and
    hand each rank its share back. Collective: every rank calls it once per judge call (StepBackend sees to it)."""

    def __init__(self, inner: Backend | None, accelerator: Any):
        self.inner, self.accelerator = inner, accelerator

    def generate(self, prompts: Sequence[Messages], sampling: SamplingParams) -> list[str]:
        from accelerate.utils import broadcast_object_list, gather_object

        counts = gather_object([len(prompts)])
        everything = gather_object(list(prompts))
        payload = [self.inner.generate(everything, sampling) if self.accelerator.is_main_process else None]
        broadcast_object_list(payload, from_process=0)
        start = sum(counts[: self.accelerator.process_index])
        return payload[0][start:start + len(prompts)]


def trainer_backend(trainer: GRPOTrainer, recipe: Recipe) -> Backend:
    """The referee backend matching how the trainer generates (recipe.generation.backend)."""
    tokenizer = trainer.processing_class
    backend = recipe.generation.backend
    if backend == "hf":
        # one generate per call (see the module docstring), so the batch is never split
        return HFBackend(trainer.model, tokenizer, batch_size=sys.maxsize, unwrap=generation_context(trainer))
    vllm = trainer.vllm_generation  # TRL's vLLM helper (covered by a contract test)
    if backend == "vllm_server":
        client = vllm.vllm_client if trainer.accelerator.is_main_process else None
        return MainProcessBackend(VLLMServerBackend(client, tokenizer) if client is not None else None,
                                  trainer.accelerator)
    if recipe.generation.vllm_tensor_parallel_size != 1:
        raise UrpoError("the self-referee with generation.backend=vllm_colocate needs "
                        "generation.vllm_tensor_parallel_size=1 (use vllm_server for tensor parallelism)")
    return VLLMColocateBackend(vllm.llm, tokenizer)
