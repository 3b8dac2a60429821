"""Length-controlled win rate, fitted as AlpacaEval 2 fits it.

Judges prefer longer answers, so a raw win rate rewards verbosity. AlpacaEval 2 (Dubois et al., "Length-Controlled
AlpacaEval", arXiv 2404.04475; alpaca_eval `metrics/glm_winrate.py`, GLM `length_controlled_v1`) fits a logistic
model of the judge's preference and predicts it at zero length difference:

    P(model answer preferred on row i) = sigmoid(theta + phi * tanh(delta_i / std(delta)) + psi * difficulty_i)
    LC win rate = mean_i sigmoid(theta + psi * difficulty_i)

delta_i is the length difference of the two answers in characters (std with ddof=1, as pandas computes it), theta
is the model term, and difficulty_i the instruction difficulty when the benchmark provides one (AlpacaEval ships a
precomputed one for its 805 instructions; without it the term is absent). Preferences are soft labels (a draw is
0.5), fitted by maximum likelihood with label weights p and 1 - p, which is what AlpacaEval's duplicated-rows fit
computes. Two things AlpacaEval adds need its own data and are not done here: regularising towards its "gamed"
(verbose and concise) baseline annotations, and choosing an L1 penalty by 5-fold cross-validation. A tiny L2 penalty
keeps the fit finite when every judgment goes one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LengthControlled", "length_controlled_win_rate"]

RIDGE = 1e-4  # L2 weight: only matters for separable data, where the unpenalised fit has no finite optimum


@dataclass(frozen=True)
class LengthControlled:
    """The fitted GLM: the win rate predicted at zero length difference and the three coefficients."""

    win_rate: float
    model_term: float          # theta
    length_weight: float       # phi: > 0 when the judge prefers the longer answer
    difficulty_weight: float   # psi (0 without a difficulty)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def _fit(features: np.ndarray, labels: np.ndarray, *, iterations: int = 100) -> np.ndarray:
    """Soft-label logistic regression without intercept (the model term is a column of ones) by Newton's method."""
    weights = np.zeros(features.shape[1])
    ridge = RIDGE * np.eye(features.shape[1])
    for _ in range(iterations):
        p = _sigmoid(features @ weights)
        gradient = features.T @ (p - labels) + RIDGE * weights
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + ridge
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return weights


def length_controlled_win_rate(outcomes: Sequence[float], answer_chars: Sequence[int],
                               reference_chars: Sequence[int],
                               difficulty: Sequence[float] | None = None) -> LengthControlled:
    """Fit the GLM to per-row outcomes in [0, 1] (1: the model's answer won, 0.5: a draw) and predict at zero length
    difference. With fewer than two rows, or answers all differing by the same length, the length term is dropped."""
    y = np.asarray(outcomes, dtype=float)
    if y.size == 0:
        raise ValueError("a length-controlled win rate needs at least one row")
    delta = np.asarray(answer_chars, dtype=float) - np.asarray(reference_chars, dtype=float)
    spread = float(np.std(delta, ddof=1)) if y.size > 1 else 0.0
    length = np.tanh(delta / spread) if spread > 0 else np.zeros_like(delta)
    d = np.zeros_like(y) if difficulty is None else np.asarray(difficulty, dtype=float)
    columns = [np.ones_like(y), length, d]
    used = [0] + [i for i in (1, 2) if np.any(columns[i] != 0)]
    fitted = np.zeros(3)
    fitted[used] = _fit(np.column_stack([columns[i] for i in used]), y)
    theta, phi, psi = (float(w) for w in fitted)
    return LengthControlled(float(_sigmoid(theta + psi * d).mean()), theta, phi, psi)
