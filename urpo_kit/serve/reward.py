"""A TRL reward function backed by a URPO referee, local or behind `urpo-kit serve`.

GRPO only compares rollouts of the same prompt, so the completions of each prompt are judged together as one
group (listwise by default: one generation per group), and each completion's reward is its referee score in
[0, 1]. A group whose judgment fails to parse gets 0.5 everywhere (no signal); a prompt with a single completion
has nothing to be compared with and also gets 0.5. With `verdict="likelihood"` the scores are probabilities read
in one forward pass (listwise: P(ranked first), summing to 1 over the group; pairwise: mean win probability,
summing to G/2; pointwise: expected score): continuous rewards that never fail to parse.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Protocol, Sequence

from urpo_kit.config.schema import Mode, VerdictKind
from urpo_kit.referee import HFBackend
from urpo_kit.referee.backends import Backend
from urpo_kit.referee.rows import Message, RowInput, judge_item, messages_text, response_text, row_key
from urpo_kit.serve.api import JudgeResponse
from urpo_kit.serve.settings import JudgeSettings, load_backend


class RewardFunction(Protocol):
    __name__: str

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]: ...


def _text(prompt: Any) -> str:
    """TRL passes a prompt as text or as chat messages."""
    return prompt if isinstance(prompt, str) else messages_text([Message.model_validate(m) for m in prompt])


def _completion(completion: Any) -> str:
    """TRL passes a completion as text or as a list of (assistant) messages."""
    if isinstance(completion, str):
        return completion
    return response_text([Message.model_validate(m) for m in completion])


Scorer = Callable[[list[RowInput]], list[list[float]]]  # rows in, per-row response scores out


def _local(target: Any, settings: JudgeSettings, tokenizer: Any, batch_size: int) -> Scorer:
    if isinstance(target, str):
        backend: Backend = load_backend(target, batch_size=batch_size)
    elif hasattr(target, "generate") and hasattr(target, "config"):  # a transformers (or PEFT) model
        from urpo_kit.models import load_tokenizer

        backend = HFBackend(target, tokenizer or load_tokenizer(target.name_or_path), batch_size=batch_size)
    else:
        backend = target
    judge = settings.judge(backend)

    def scores(rows: list[RowInput]) -> list[list[float]]:
        keys = [row_key(row) for row in rows]
        settings.seed_batch(keys)
        return [v.scores for v in judge.judge([judge_item(row, key) for row, key in zip(rows, keys)])]

    return scores


def _remote(url: str, mode: Mode, verdict: VerdictKind | None, token: str | None, timeout: float,
            rows_per_request: int) -> Scorer:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def scores(rows: list[RowInput]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(rows), rows_per_request):
            body: dict[str, Any] = {"mode": mode, "rows": [{"prompt": r.prompt, "responses": r.responses}
                                                           for r in rows[start:start + rows_per_request]]}
            if verdict is not None:
                body["verdict"] = verdict
            response = client.post("/v1/judge", json=body)
            if response.status_code != 200:
                raise RuntimeError(f"judge server {url}: HTTP {response.status_code}: {response.text[:500]}")
            out += [r.scores for r in JudgeResponse.model_validate(response.json()).results]
        return out

    return scores


def reward_function(model_or_url: Any, mode: Mode = "listwise", *, verdict: VerdictKind | None = None,
                    settings: JudgeSettings | None = None, tokenizer: Any = None, batch_size: int = 16,
                    token: str | None = None, timeout: float = 600.0, rows_per_request: int = 32) -> RewardFunction:
    """A reward function `fn(prompts, completions, **kwargs) -> list[float]` for TRL's GRPOTrainer.

    `model_or_url`: an `http(s)://` URL of `urpo-kit serve` (the server's settings apply; `token` is its bearer
    token), a model name or folder (`bundled:smollm2-135m-instruct`, a trained checkpoint), a loaded transformers
    model (with `tokenizer`, else loaded from the model's folder), or any referee `Backend`. `settings` (debias,
    samples, sampling, template, labels, prefill, scale, seed) apply locally; `mode` overrides `settings.mode`.
    `verdict` (sample | likelihood), when given, overrides `settings.verdict` locally and is sent with each request
    to a server (else the server's applies); a local likelihood judge is checked here, at construction.
    """
    remote = isinstance(model_or_url, str) and model_or_url.startswith(("http://", "https://"))
    if remote and settings is not None:
        raise ValueError("with a server URL the server's settings apply; set them on `urpo-kit serve`")
    if remote:
        scores = _remote(model_or_url, mode, verdict, token, timeout, rows_per_request)
    else:
        base = settings or JudgeSettings()
        settings = base.model_copy(update={"mode": mode, "verdict": verdict or base.verdict})
        scores = _local(model_or_url, settings, tokenizer, batch_size)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(i)
        judged = [members for members in groups.values() if len(members) > 1]
        rows = [RowInput(_text(prompts[m[0]]), [_completion(completions[i]) for i in m]) for m in judged]
        rewards = [0.5] * len(prompts)
        for members, group_scores in zip(judged, scores(rows) if rows else []):
            for i, score in zip(members, group_scores):
                rewards[i] = score
        return rewards

    reward.__name__ = f"urpo_referee_{mode}"
    return reward
