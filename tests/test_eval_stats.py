"""urpo_kit.eval.stats: the Wilson interval of an accuracy and the paired bootstrap interval of a change."""

from __future__ import annotations

import pytest

from urpo_kit.eval.stats import Change, interval, paired_bootstrap


def test_wilson_interval_known_values() -> None:
    assert interval([1.0] * 8 + [0.0] * 24) == pytest.approx((0.1325, 0.4211), abs=1e-4)
    assert interval([1.0] * 16 + [0.0] * 16) == pytest.approx((0.3363, 0.6637), abs=1e-4)
    low, high = interval([0.0] * 32)
    assert low == 0.0 and high == pytest.approx(0.1072, abs=1e-4)  # stays inside [0, 1], unlike p +- 1.96 se
    assert interval([0.5] * 32) == interval([1.0] * 16 + [0.0] * 16)  # ties count as fractional successes
    with pytest.raises(ValueError):
        interval([])


def test_paired_bootstrap_sees_a_shift_and_no_change() -> None:
    before = {str(i): float(i % 2) for i in range(64)}
    after = {k: 1.0 if int(k) % 4 == 0 else v for k, v in before.items()}  # 16 rows go from 0 to 1
    change = paired_bootstrap(before, after)
    assert isinstance(change, Change) and change.n == 64 and change.diff == pytest.approx(0.25)
    assert 0 < change.lo < change.diff < change.hi
    same = paired_bootstrap(before, dict(before))
    assert same is not None and (same.diff, same.lo, same.hi) == (0.0, 0.0, 0.0)
    assert str(change).startswith("+0.250 [+0.")


def test_paired_bootstrap_matches_rows_by_key_and_is_reproducible() -> None:
    before = {str(i): float(i % 3 == 0) for i in range(40)}
    after = {str(i): float(i % 2 == 0) for i in range(10, 50)}  # 30 rows in common
    change = paired_bootstrap(before, after)
    assert change is not None and change.n == 30
    assert paired_bootstrap(before, after) == change
    assert paired_bootstrap(dict(reversed(before.items())), after) == change  # dict order does not matter
    assert paired_bootstrap(before, after, seed=1) != change
    assert paired_bootstrap({"a": 0.0, "b": 1.0}, {"a": 1.0, "c": 1.0}) is None  # fewer than 2 shared rows
