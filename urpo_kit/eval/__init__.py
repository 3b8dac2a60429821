"""Evaluation: player benchmarks through lm-eval, referee benchmarks (RewardBench-style), win rate against references
(AlpacaEval protocol), and the run folder's reports. `run_suite` is what both `urpo-kit eval` and the trainer call."""

from urpo_kit.eval.report import SuiteResult, compare_runs, load_run
from urpo_kit.eval.runner import evaluate_suite, evaluation_state, run_suite

__all__ = ["SuiteResult", "compare_runs", "evaluate_suite", "evaluation_state", "load_run", "run_suite"]
