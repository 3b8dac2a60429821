"""Open-ended win rate against reference answers, following the AlpacaEval protocol (not an AlpacaEval score).

The model answers each instruction of an open-ended task; a judge model (the model itself by default) sees the
instruction with the model's answer and the reference answer in a seeded random order (RewardBench's draw, see
`referee_bench.presentation_orders`) and picks one. win rate = (wins + draws / 2) / items, where a judgment that
cannot be parsed is a draw and is also counted on its own. Every report labels it "AlpacaEval-protocol, judge=X".
Beside it, the length-controlled win rate (`lc_win_rate`), fitted as AlpacaEval 2 does: see `length_control`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from urpo_kit.compiler import prepare_task
from urpo_kit.config.refs import written_overrides
from urpo_kit.config.suite import WinRateBenchmark
from urpo_kit.errors import UrpoError
from urpo_kit.kinds import OpenEnded
from urpo_kit.eval.length_control import length_controlled_win_rate
from urpo_kit.eval.referee_bench import PreferenceItem, presentation_orders
from urpo_kit.recast import RenderError, Templates, render
from urpo_kit.referee import Judge, JudgeItem, SamplingParams
from urpo_kit.referee.backends import Backend

__all__ = ["WinRateResult", "protocol_label", "run_winrate"]


def protocol_label(judge: str) -> str:
    """The one way a win rate is named in every report."""
    return f"AlpacaEval-protocol, judge={judge}"


@dataclass
class WinRateResult:
    metrics: dict[str, float]
    label: str
    data_sha256: str
    log: list[dict[str, Any]] = field(default_factory=list)


def run_winrate(bench: WinRateBenchmark, *, player: Backend, judge: Backend, judge_name: str, limit: int | None,
                player_sampling: SamplingParams, judge_sampling: SamplingParams, seed: int, suite_dir: Path | None,
                allow_code: bool = False) -> WinRateResult:
    """Generate the model's answers, then judge them against the references in one batched call."""
    prepared = prepare_task(bench.task, written_overrides(bench),
                            allow_code=allow_code, limit=limit)
    task = prepared.task
    if not isinstance(task, OpenEnded):
        raise UrpoError(f"{bench.task}: a win-rate benchmark needs an open-ended task, not a {task.kind} task")
    templates = Templates(suite_dir)
    reference_template = templates.inline(bench.reference, "reference")
    difficulty_template = None if bench.difficulty is None else templates.inline(bench.difficulty, "difficulty")
    prompts, references, difficulty = [], [], []
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        variables = task.variables(row, number)
        prompts.append(task.player.messages(variables, number))
        references.append(str(render(reference_template, variables, "reference", number)).strip())
        if difficulty_template is not None:
            difficulty.append(_number(render(difficulty_template, variables, "difficulty", number), number))
    answers = player.generate(prompts, player_sampling)
    # the judge sees the player's request: the last (user) message, as AlpacaEval shows the instruction
    items = [PreferenceItem(p[-1]["content"], [a, r], "", n)
             for p, a, r, n in zip(prompts, answers, references, prepared.rows.row_numbers)]
    orders = presentation_orders(items, seed)
    referee = Judge(judge, bench.referee, sampling=judge_sampling, base_dir=suite_dir, seed=seed)
    verdicts = referee.judge([JudgeItem(i.prompt, [i.candidates[k] for k in o], str(i.row))
                              for i, o in zip(items, orders)])
    outcomes, log, failures, first = [], [], 0, []
    for item, order, verdict in zip(items, orders, verdicts):
        if verdict.ranking is None:
            failures += 1
            outcome = 0.5
        else:
            outcome = float(order[verdict.ranking[0]] == 0)  # candidate 0 is the model's answer
            first.append(float(verdict.ranking[0] == 0))
        outcomes.append(outcome)
        log.append({"row": item.row, "instruction": item.prompt, "answer": item.candidates[0],
                    "reference": item.candidates[1], "shown": order, "outcome": outcome, "raw": verdict.raw})
    digest = hashlib.sha256(json.dumps([[i.prompt, i.candidates[1]] for i in items], ensure_ascii=False).encode())
    n = len(outcomes)
    lc = length_controlled_win_rate(outcomes, [len(a) for a in answers], [len(r) for r in references],
                                    difficulty or None)
    metrics = {
        "win_rate": sum(outcomes) / n,
        "lc_win_rate": lc.win_rate,
        "lc_length_weight": lc.length_weight,
        "n": float(n),
        "parse_failures": float(failures),
        "parse_failure_rate": failures / n,
        "answer_chars": sum(len(a) for a in answers) / n,
        "reference_chars": sum(len(r) for r in references) / n,
    }
    if first:  # undefined when no judgment parsed
        metrics["first_position"] = sum(first) / len(first)
    return WinRateResult(metrics, protocol_label(judge_name), digest.hexdigest(), log)


def _number(value: object, row_number: int) -> float:
    """A rendered difficulty as a float, or a located error naming the row."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise RenderError("difficulty", f"renders {str(value)!r}, not a finite number", row_number=row_number)
    return number
