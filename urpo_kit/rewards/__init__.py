"""Rewards without a model: answer extraction, verifiers, referee-output parsing, ranking scores, aggregation."""

from urpo_kit.rewards.aggregate import combine, length_penalty
from urpo_kit.rewards.extract import EXTRACT_METHODS, Extractor, extract_answer, extractor
from urpo_kit.rewards.ranking import (
    SCORE_METHODS,
    average_rank_rewards,
    parse_choice,
    parse_ranking,
    parse_score,
    parse_verdict,
    rank_to_rewards,
    score_ranking,
    spearman,
)
from urpo_kit.rewards.verifiers import VERIFIERS, Verifier, choice_letter, get_verifier, parse_number

__all__ = [
    "EXTRACT_METHODS",
    "SCORE_METHODS",
    "VERIFIERS",
    "Verifier",
    "average_rank_rewards",
    "Extractor",
    "extractor",
    "choice_letter",
    "combine",
    "extract_answer",
    "get_verifier",
    "length_penalty",
    "parse_choice",
    "parse_number",
    "parse_ranking",
    "parse_score",
    "parse_verdict",
    "rank_to_rewards",
    "score_ranking",
    "spearman",
]
