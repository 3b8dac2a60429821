"""GRPO reward functions, one per task kind, each returning None for the rows of other kinds.

TRL 1.16 calls every reward function once per generation batch with `prompts`, `completions` (chat messages for
conversational prompts), `completion_ids`, the dataset's extra columns (`task`, `kind`, `gold`, `meta`, as written by
`Episode.to_record`), `trainer_state` and `log_metric`. The batch is this process's whole generation batch, so all G
completions of a prompt arrive together (the layout check guarantees it where the self-referee needs it), next to
each other, with the same `meta.position`.

Scoring reuses `urpo_kit.rewards` (extraction, verifiers, ranking parse and score, `combine` with the task's
RewardSpec) and `urpo_kit.referee.Judge`; nothing is parsed or scored differently from `urpo-kit validate` or eval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from urpo_kit.config.schema import OpenEndedTask, PreferenceTask, TaskSpec, VerifiableTask
from urpo_kit.referee import JudgeItem
from urpo_kit.rewards import combine, extract_answer, get_verifier, parse_verdict, score_ranking
from urpo_kit.train.metrics import LogMetric, group_stats, name, spearman
from urpo_kit.train.self_referee import SelfReferee


@dataclass
class Row:
    """One completion with its episode's context."""

    index: int            # position in the batch TRL passed
    task: str
    gold: Any
    meta: dict[str, Any]
    text: str
    n_tokens: int


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (the assistant's last)."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1]["content"]) if completion else ""


def _no_log(_name: str, _value: float) -> None:
    return None


@dataclass
class StepObserver:
    """Data positions consumed at each step (as the reward functions saw them), for the run log and resume checks."""

    positions: dict[int, list[int]] = field(default_factory=dict)

    def record(self, step: int, metas: Sequence[dict[str, Any]]) -> None:
        self.positions[step] = sorted({m["position"] for m in metas})

    def drain(self) -> dict[int, list[int]]:
        out, self.positions = self.positions, {}
        return out


class KindReward:
    """Base: selects this kind's rows, scores them, emits metrics. Subclasses implement `score`."""

    kind = ""

    def __init__(self, tasks: dict[str, TaskSpec]):
        self.tasks = tasks
        self.observer: StepObserver | None = None
        self.__name__ = self.kind  # TRL names the reward column (`rewards/<name>/mean`) after it

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], *, task: list[str],
                 kind: list[str], gold: list[str], meta: list[str], log_metric: LogMetric | None = None,
                 trainer_state: Any = None, **_: Any) -> list[float | None]:
        metas = [json.loads(m) for m in meta]
        if self.observer is not None and trainer_state is not None:
            self.observer.record(trainer_state.global_step + 1, metas)
        rows = [Row(i, task[i], json.loads(gold[i]), metas[i], completion_text(completions[i]), len(completion_ids[i]))
                for i in range(len(kind)) if kind[i] == self.kind]
        out: list[float | None] = [None] * len(kind)
        for i, reward in self.score(rows, log_metric or _no_log).items():
            out[i] = reward
        return out

    def score(self, rows: list[Row], log: LogMetric) -> dict[int, float]:
        raise NotImplementedError

    @staticmethod
    def groups(rows: Sequence[Row]) -> list[list[Row]]:
        """Consecutive rows of one prompt (same task and stream position) form a group."""
        out: list[list[Row]] = []
        for row in rows:
            if out and out[-1][0].meta["position"] == row.meta["position"] and out[-1][0].task == row.task:
                out[-1].append(row)
            else:
                out.append([row])
        return out

    def emit_common(self, log: LogMetric, role: str, rows: Sequence[Row], rewards: dict[int, float]) -> None:
        """Reward mean, length, and the group statistics, per task."""
        for group in self.groups(rows):
            prefix = f"{group[0].task}/{role}"
            for r in group:
                log(f"{prefix}/reward_mean", rewards[r.index])
                log(f"{prefix}/length_mean", r.n_tokens)
            group_stats(log, prefix, [[rewards[r.index] for r in group]])


class VerifiableReward(KindReward):
    """Player answers checked against the gold answer: extraction, verifier, then the task's reward weights."""

    kind = "verifiable"

    def __init__(self, tasks: dict[str, TaskSpec], *, allow_code: bool = False):
        super().__init__(tasks)
        self.verifiers = {n: get_verifier(t.answer.verifier, allow_code=allow_code)
                          for n, t in tasks.items() if isinstance(t, VerifiableTask)}

    def score(self, rows: list[Row], log: LogMetric) -> dict[int, float]:
        rewards = {}
        for r in rows:
            spec = self.tasks[r.task]
            assert isinstance(spec, VerifiableTask)
            answer = extract_answer(r.text, spec.answer.extract)
            correct = 0.0 if answer is None else self.verifiers[r.task](answer, r.gold, **spec.answer.verifier_args)
            rewards[r.index], _ = combine(correct, answer is not None, r.n_tokens, spec.reward)
            log(name(r.task, "player", "accuracy"), float(correct))
            log(name(r.task, "player", "answer_rate"), float(answer is not None))
        self.emit_common(log, "player", rows, rewards)
        return rewards


class PreferenceReward(KindReward):
    """Referee judgments of shown candidates, scored against the gold ranking with the task's `score` method."""

    kind = "preference"

    def score(self, rows: list[Row], log: LogMetric) -> dict[int, float]:
        rankings = {r.index: parse_verdict(r.text, r.meta["labels"], r.meta.get("prefill", "")) for r in rows}
        balance = self.position_shares(rows, rankings)
        rewards = {}
        for r in rows:
            spec = self.tasks[r.task]
            assert isinstance(spec, PreferenceTask)
            ranking = rankings[r.index]
            rewards[r.index], _ = combine(score_ranking(ranking, r.gold, spec.score), ranking is not None,
                                          r.n_tokens, spec.reward)
            if ranking is not None and spec.position_balance:  # a bonus only: a parsed pick stays above no verdict
                rewards[r.index] += spec.position_balance * max(0.0, 1 / len(ranking) - balance[r.task][ranking[0]])
            log(name(r.task, "referee", "accuracy"), score_ranking(ranking, r.gold, "exact"))
            log(name(r.task, "referee", "parse_rate"), float(ranking is not None))
            if ranking is not None:  # position bias: how often the candidate shown first is ranked best
                log(name(r.task, "referee", "first_shown_best_rate"), float(ranking[0] == 0))
        self.emit_common(log, "referee", rows, rewards)
        return rewards

    @staticmethod
    def position_shares(rows: Sequence[Row], rankings: dict[int, list[int] | None]) -> dict[str, list[float]]:
        """Per task, the share of this batch's parsed judgments whose top pick is at each shown position."""
        counts: dict[str, list[int]] = {}
        for r in rows:
            ranking = rankings[r.index]
            if ranking is not None:
                counts.setdefault(r.task, [0] * len(ranking))[ranking[0]] += 1
        return {task: [c / sum(per) for c in per] for task, per in counts.items()}


class OpenEndedReward(KindReward):
    """Player answers ranked by the current model itself: one judge call per task and step (see SelfReferee)."""

    kind = "open_ended"

    def __init__(self, tasks: dict[str, TaskSpec], referee: SelfReferee):
        super().__init__(tasks)
        self.referee = referee

    def score(self, rows: list[Row], log: LogMetric) -> dict[int, float]:
        groups = self.groups(rows)
        items: dict[str, list[JudgeItem]] = {}
        for group in groups:
            items.setdefault(group[0].task, []).append(JudgeItem(
                prompt=group[0].meta["instruction"], candidates=[r.text for r in group],
                key=str(group[0].meta["position"])))
        verdicts = self.referee.judge_all(items)  # called even when `items` is empty: see SelfReferee
        for task_name, seconds in self.referee.seconds.items():
            log(name(task_name, "referee", "time_s"), seconds)
        log("self_referee/time_s", sum(self.referee.seconds.values()))
        rewards: dict[int, float] = {}
        cursor = {t: iter(v) for t, v in verdicts.items()}
        for group in groups:
            task_name = group[0].task
            spec = self.tasks[task_name]
            assert isinstance(spec, OpenEndedTask)
            verdict = next(cursor[task_name])
            for r, s in zip(group, verdict.scores):
                rewards[r.index], _ = combine(s, bool(r.text.strip()), r.n_tokens, spec.reward)
            prefix = f"{task_name}/referee"
            log(f"{prefix}/parse_rate", verdict.parsed / verdict.attempts if verdict.attempts else 0.0)
            log(f"{prefix}/no_signal_rate", float(not verdict.ok))
            if verdict.agreement is not None:
                log(f"{prefix}/both_orders_agreement", verdict.agreement)
            if verdict.ok and (rho := spearman(verdict.scores, [r.n_tokens for r in group])) is not None:
                log(f"{prefix}/rank_length_spearman", rho)
        self.emit_common(log, "player", rows, rewards)
        return rewards


def reward_functions(tasks: dict[str, TaskSpec], *, allow_code: bool, referee: SelfReferee | None,
                     observer: StepObserver | None = None) -> list[KindReward]:
    """One reward function per task kind present in the run (the first one also records data positions)."""
    kinds = {t.kind for t in tasks.values()}
    out: list[KindReward] = []
    if "verifiable" in kinds:
        out.append(VerifiableReward(tasks, allow_code=allow_code))
    if "preference" in kinds:
        out.append(PreferenceReward(tasks))
    if "open_ended" in kinds:
        if referee is None:
            raise ValueError("open-ended tasks need a SelfReferee")
        out.append(OpenEndedReward(tasks, referee))
    if out:
        out[0].observer = observer
    return out
