"""urpo_kit.compiler: largest-remainder allocation and the mixed, seeded, resumable URPO stream."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urpo_kit.compiler import MixedStream, PreparedTask, allocate, prepare_recipe_tasks, prepare_spec, prepare_task
from urpo_kit.config import load_recipe
from urpo_kit.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_task(folder: Path, name: str, rows: int | list[dict], *, weight: float = 1.0, extra: str = "") -> PreparedTask:
    """A verifiable task over a local jsonl whose rows say which task and row they are (`NAME-ROW`)."""
    data = rows if isinstance(rows, list) else [{"q": f"{name}-{i}", "a": str(i)} for i in range(1, rows + 1)]
    write(folder / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in data))
    yaml = write(folder / f"{name}.yaml", f"name: {name}\nkind: verifiable\nsource: {{path: {name}.jsonl{extra}}}\n"
                 "player:\n  prompt: \"{{ q }}\"\nanswer: {gold: \"{{ a }}\", verifier: numeric}\n")
    return prepare_task(yaml, weight=weight)


def make_preference(folder: Path, name: str = "pref", rows: int = 1, extra: str = "") -> PreparedTask:
    data = [{"prompt": f"q{i}", "ranked": [f"best {i}", f"good {i}", f"bad {i}", f"worst {i}"]} for i in range(rows)]
    write(folder / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in data))
    yaml = write(folder / f"{name}.yaml", f"name: {name}\nkind: preference\nsource: {{path: {name}.jsonl}}\n{extra}")
    return prepare_task(yaml)


def sequence(stream: MixedStream, start: int = 0, stop: int | None = None) -> list[str]:
    """What each position holds, as `task/row/epoch`."""
    return [f"{e.task}/{e.row}/{e.epoch}" for e in stream.episodes(start, stop)]


def longest_run(items: list[str]) -> int:
    best = run = 1
    for a, b in zip(items, items[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


# ------------------------------------------------------------------------------------------------ allocate
@pytest.mark.parametrize(
    ("weights", "length", "expected"),
    [
        ([0.4, 0.3, 0.3], 240, [96, 72, 72]),
        ([1, 1, 1], 10, [4, 3, 3]),  # equal remainders: the earlier task gets the extra one
        ([1, 1, 1], 2, [1, 1, 0]),
        ([0.5, 0.3, 0.2], 7, [4, 2, 1]),  # raw 3.5, 2.1, 1.4: the largest remainders (.5, .4) win
        ([3, 1], 5, [4, 1]),  # raw 3.75, 1.25
        ([1], 13, [13]),
        ([2, 2], 0, [0, 0]),
        ([0.001, 1000], 10, [0, 10]),
    ],
)
def test_allocate_known_cases(weights: list[float], length: int, expected: list[int]) -> None:
    assert allocate(weights, length) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8), st.integers(0, 5000))
def test_allocate_is_exact_and_proportional(weights: list[float], length: int) -> None:
    counts = allocate(weights, length)
    assert sum(counts) == length
    raw = [w / sum(weights) * length for w in weights]
    assert all(abs(c - r) < 1 for c, r in zip(counts, raw))
    # largest remainder: nobody rounded down has a larger remainder than somebody rounded up
    up = [r - int(r) for c, r in zip(counts, raw) if c > int(r)]
    down = [r - int(r) for c, r in zip(counts, raw) if c == int(r)]
    if up and down:
        assert min(up) >= max(down) - 1e-9


@pytest.mark.parametrize(("weights", "length"), [([], 5), ([1, 0], 5), ([1, -1], 5), ([float("nan")], 5), ([1], -1)])
def test_allocate_rejects_bad_input(weights: list[float], length: int) -> None:
    with pytest.raises(ValueError):
        allocate(weights, length)


# ------------------------------------------------------------------------------------------------ counts
def test_realised_counts_follow_the_weights_exactly(tmp_path: Path) -> None:
    tasks = [make_task(tmp_path, "a", 40, weight=0.5), make_task(tmp_path, "b", 40, weight=0.3),
             make_task(tmp_path, "c", 40, weight=0.2)]
    stream = MixedStream(tasks, 100, seed=0)
    seen = Counter(e.task for e in stream.episodes())
    assert seen == {"a": 50, "b": 30, "c": 20}
    assert stream.realised_counts() == {"a": 50, "b": 30, "c": 20}
    assert stream.counts == [50, 30, 20]
    # a window of the stream counts what is in it
    assert sum(stream.realised_counts(10, 30).values()) == 20
    assert stream.realised_counts(10, 30) == dict(Counter(e.task for e in stream.episodes(10, 30)))


def test_weights_are_normalised(tmp_path: Path) -> None:
    a = MixedStream([make_task(tmp_path, "a", 5, weight=2), make_task(tmp_path, "b", 5, weight=6)], 40).counts
    b = MixedStream([make_task(tmp_path, "a", 5, weight=0.25), make_task(tmp_path, "b", 5, weight=0.75)], 40).counts
    assert a == b == [10, 30]


def test_counts_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="urpo_kit.compiler"):
        MixedStream([make_task(tmp_path, "a", 5, weight=3), make_task(tmp_path, "b", 5)], 8, seed=4)
    text = caplog.text
    assert "8 episodes" in text and re.search(r"a: 6 \(75\.0%", text) and re.search(r"b: 2 \(25\.0%", text)


# ------------------------------------------------------------------------------------------------ order
def test_stream_is_deterministic_per_seed(tmp_path: Path) -> None:
    tasks = [make_task(tmp_path, "a", 30), make_task(tmp_path, "b", 30, weight=2)]
    first = sequence(MixedStream(tasks, 60, seed=1))
    assert first == sequence(MixedStream(tasks, 60, seed=1))
    assert first != sequence(MixedStream(tasks, 60, seed=2))
    # tasks prepared again from their files give the same stream too (nothing depends on object identity)
    again = [make_task(tmp_path, "a", 30), make_task(tmp_path, "b", 30, weight=2)]
    assert first == sequence(MixedStream(again, 60, seed=1))


def test_equal_weights_are_spread_evenly(tmp_path: Path) -> None:
    tasks = [make_task(tmp_path, name, 10) for name in "abc"]
    for seed in range(5):
        names = [e.task for e in MixedStream(tasks, 90, seed=seed).episodes()]
        assert longest_run(names) == 1
        for k in range(1, 91):  # every prefix holds each task within one of its fair share
            prefix = Counter(names[:k])
            assert all(abs(prefix[t] - k / 3) <= 1 for t in "abc"), (seed, k, prefix)


def test_unequal_weights_are_spread_evenly(tmp_path: Path) -> None:
    tasks = [make_task(tmp_path, "a", 10, weight=0.6), make_task(tmp_path, "b", 10, weight=0.3),
             make_task(tmp_path, "c", 10, weight=0.1)]
    names = [e.task for e in MixedStream(tasks, 200, seed=3).episodes()]
    share = {"a": 0.6, "b": 0.3, "c": 0.1}
    for k in range(1, 201):
        prefix = Counter(names[:k])
        assert all(abs(prefix[t] - k * share[t]) <= 2 for t in share), (k, prefix)
    assert longest_run([n for n in names if n != "a"]) <= 3  # c is never starved between b's for long


# ------------------------------------------------------------------------------------------------ resume
def test_resume_from_any_position_continues_the_same_order(tmp_path: Path) -> None:
    tasks = [make_task(tmp_path, "a", 7), make_task(tmp_path, "b", 11, weight=2), make_preference(tmp_path, rows=3)]
    full = [e.to_record() for e in MixedStream(tasks, 120, seed=9).episodes()]
    for k in (0, 1, 37, 119):
        resumed = MixedStream(tasks, 120, seed=9)  # a fresh process would build a fresh stream
        assert [e.to_record() for e in resumed.episodes(start=k)] == full[k:]
        assert resumed.episode(k).to_record() == full[k]
    # positions in random access order give the same episodes as streaming
    stream = MixedStream(tasks, 120, seed=9)
    for position in (100, 3, 57, 3):
        assert stream.episode(position).to_record() == full[position]


def test_positions_outside_the_stream(tmp_path: Path) -> None:
    stream = MixedStream([make_task(tmp_path, "a", 3)], 5)
    with pytest.raises(IndexError):
        stream.episode(5)
    with pytest.raises(IndexError):
        stream.episode(-1)
    assert len(list(stream.episodes(3, 100))) == 2
    with pytest.raises(ValueError):
        MixedStream([make_task(tmp_path, "a", 3)], 0)
    with pytest.raises(ValueError):
        MixedStream([], 5)


def test_duplicate_task_names_are_refused(tmp_path: Path) -> None:
    a = make_task(tmp_path, "a", 3)
    with pytest.raises(ConfigError, match="two tasks are named `a`"):
        MixedStream([a, a], 10)


# ------------------------------------------------------------------------------------------------ cycling
def test_short_task_cycles_first_in_source_order_then_reshuffled(tmp_path: Path) -> None:
    small = make_task(tmp_path, "small", 5)
    big = make_task(tmp_path, "big", 100, weight=3)
    stream = MixedStream([small, big], 200, seed=0)
    assert stream.counts == [50, 150]
    assert stream.epochs() == {"small": 10.0, "big": 1.5}
    rows = [e.row for e in stream.episodes() if e.task == "small"]
    epochs = [e.epoch for e in stream.episodes() if e.task == "small"]
    assert rows[:5] == [1, 2, 3, 4, 5]  # first pass: source order
    assert epochs == [k // 5 for k in range(50)]
    passes = [rows[i:i + 5] for i in range(0, 50, 5)]
    assert all(sorted(p) == [1, 2, 3, 4, 5] for p in passes)  # every pass shows every row once
    assert sum(p != [1, 2, 3, 4, 5] for p in passes[1:]) >= 6  # later passes are reshuffled
    assert len({tuple(p) for p in passes[1:]}) >= 5  # ... differently each pass
    big_rows = [e.row for e in stream.episodes() if e.task == "big"]
    assert big_rows[:100] == list(range(1, 101)) and sorted(big_rows[100:]) == sorted(set(big_rows[100:]))


def test_reshuffled_passes_depend_on_the_seed(tmp_path: Path) -> None:
    small = make_task(tmp_path, "small", 6)

    def rows(seed: int) -> list[int]:
        return [e.row for e in MixedStream([small], 30, seed=seed).episodes()]

    assert rows(0)[:6] == rows(1)[:6] == [1, 2, 3, 4, 5, 6]
    assert rows(0)[6:] != rows(1)[6:]


def test_same_preference_row_is_shuffled_differently_at_each_position(tmp_path: Path) -> None:
    stream = MixedStream([make_preference(tmp_path, rows=1)], 30, seed=0)
    episodes = list(stream.episodes())
    assert {e.row for e in episodes} == {1}
    # the best candidate's slot follows the row number (balance_positions); the other three vary by position
    assert {e.payload.order.index(0) for e in episodes} == {1}
    assert len({tuple(e.payload.order) for e in episodes}) >= 5
    for e in episodes:
        assert [e.payload.order[g] for g in e.payload.gold] == [0, 1, 2, 3]


def test_orders_per_row_shows_each_row_with_the_best_at_every_position_side_by_side(tmp_path: Path) -> None:
    """orders_per_row: 2: places 2j and 2j+1 show the same row, the best one shown position further the second
    time (with two candidates: both orders), and a pass over the rows takes twice as many places; steps by role keep
    each pair of places in one step."""
    pairs = make_preference(tmp_path, rows=3, extra="orders_per_row: 2\n")
    stream = MixedStream([pairs], 12, seed=0, step_size=4)
    episodes = list(stream.episodes())
    assert [e.row for e in episodes[:6]] == [1, 1, 2, 2, 3, 3]
    assert stream.epochs() == {"pref": 2.0} and [e.epoch for e in episodes] == [0] * 6 + [1] * 6
    for first, second in zip(episodes[::2], episodes[1::2]):
        assert first.row == second.row and first.position // 4 == second.position // 4
        assert second.payload.order.index(0) == (first.payload.order.index(0) + 1) % 4
        assert first.messages != second.messages


def test_orders_per_row_needs_balanced_shuffled_positions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="orders_per_row"):
        make_preference(tmp_path, rows=2, extra="orders_per_row: 2\nbalance_positions: false\n")


# ------------------------------------------------------------------------------------------------ bad rows
def rows_with_holes(n: int, bad: set[int]) -> list[dict]:
    """Row i (1-based) lacks the `q` column the prompt template needs when i is in `bad`."""
    return [{"a": str(i)} if i in bad else {"q": f"x-{i}", "a": str(i)} for i in range(1, n + 1)]


def test_rows_that_fail_to_render_are_skipped_and_counted(tmp_path: Path) -> None:
    prepared = make_task(tmp_path, "holes", rows_with_holes(20, {4}), extra=", max_error_fraction: 0.1")
    assert len(prepared.rows.rows) == 19 and 4 not in prepared.rows.row_numbers
    assert [s.row_number for s in prepared.rows.skipped] == [4]
    assert "player.prompt" in prepared.rows.skipped[0].reason and "'q' is undefined" in prepared.rows.skipped[0].reason
    rows = [e.row for e in MixedStream([prepared], 19).episodes()]
    assert rows == [i for i in range(1, 21) if i != 4]


def test_too_many_rows_failing_to_render_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_task(tmp_path, "holes", rows_with_holes(20, {2, 9, 15}), extra=", max_error_fraction: 0.1")
    (problem,) = info.value.problems
    assert problem.file == tmp_path / "holes.yaml" and problem.line == 5 and problem.field == "player.prompt"
    assert "(row 2)" in problem.message and "[3 of 20 rows fail]" in problem.message
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/holes\.yaml:5:\d+: player\.prompt: .+", str(info.value))


def test_malformed_and_unrenderable_rows_count_together(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in rows_with_holes(20, {3})]
    lines[9] = "{not json"
    write(tmp_path / "mixed.jsonl", "\n".join(lines) + "\n")
    yaml = write(tmp_path / "mixed.yaml", "name: mixed\nkind: verifiable\nsource: {path: mixed.jsonl, "
                 "max_error_fraction: 0.1}\nplayer: {prompt: '{{ q }}'}\nanswer: {gold: '{{ a }}'}\n")
    prepared = prepare_task(yaml)
    assert sorted(s.row_number for s in prepared.rows.skipped) == [3, 10]
    with pytest.raises(ConfigError, match=r"\[2 of 20 rows fail\]"):
        prepare_task(yaml, ["source.max_error_fraction=0.05"])


def test_every_row_failing_fails_even_when_errors_are_tolerated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="player.prompt"):
        make_task(tmp_path, "none", rows_with_holes(3, {1, 2, 3}), extra=", max_error_fraction: 1.0")


# ------------------------------------------------------------------------------------------------ recipe
def test_recipe_to_stream(tmp_path: Path) -> None:
    make_task(tmp_path / "tasks", "a", 10)
    make_preference(tmp_path / "tasks", "p", rows=4)
    write(tmp_path / "gen.yaml", "name: gen\nkind: verifiable\nsource: {generator: arithmetic, n: 30, seed: 1}\n"
          "fields: {solution: answer}\nplayer: {prompt: '{{ question }}'}\n"
          "answer: {gold: \"{{ solution.split('####')[-1] | trim }}\", verifier: numeric}\n")
    recipe = write(tmp_path / "recipes" / "r.yaml", "tasks:\n  - {task: ../tasks/a.yaml, weight: 0.5}\n"
                   "  - {task: ../tasks/p.yaml, weight: 0.25}\n"
                   "  - {task: ../gen.yaml, weight: 0.25, overrides: {name: arith, source.limit: 8}}\n"
                   "grpo: {steps: 5, prompts_per_step: 8}\nseed: 3\n")
    spec = load_recipe(recipe)
    tasks = prepare_recipe_tasks(spec)
    assert [t.name for t in tasks] == ["a", "p", "arith"] and len(tasks[2].rows.rows) == 8
    stream = MixedStream.from_recipe(spec, tasks)
    assert stream.length == 40 and stream.seed == 3
    assert stream.realised_counts() == {"a": 20, "p": 10, "arith": 10}
    kinds = {e.task: e.kind for e in stream.episodes()}
    assert kinds == {"a": "verifiable", "p": "preference", "arith": "verifiable"}


def test_prepare_spec_for_a_task_built_in_code(tmp_path: Path) -> None:
    from urpo_kit.kinds import TaskFile

    write(tmp_path / "rows.jsonl", '{"q": "hi", "a": "1"}\n')
    spec = TaskFile.model_validate({"task": {
        "name": "code", "kind": "verifiable", "source": {"path": str(tmp_path / "rows.jsonl")},
        "player": {"prompt": "{{ q }}"}, "answer": {"gold": "{{ a }}"}}}).task
    prepared = prepare_spec(spec, weight=2.0)
    assert prepared.weight == 2.0 and prepared.name == "code"
    assert MixedStream([prepared], 3).episode(2).payload.gold == "1"


def test_steps_by_role_give_every_step_one_role_in_proportion(tmp_path: Path) -> None:
    """grpo.steps_by_role: steps shared out by the roles' summed weights, then each role's positions by its tasks'
    weights; every step's prompts are of its role, and the stream stays a pure function of the position."""
    tasks = [make_task(tmp_path, "a", 40, weight=0.5), make_task(tmp_path, "b", 40, weight=0.25),
             make_preference(tmp_path, "p", rows=40)]
    tasks[2].weight = 0.25
    stream = MixedStream(tasks, 40, seed=0, step_size=4)
    assert stream.role_steps.count("player") == 8 and stream.role_steps.count("referee") == 2
    assert stream.realised_counts() == {"a": 21, "b": 11, "p": 8} and stream.counts == [21, 11, 8]
    role = {"a": "player", "b": "player", "p": "referee"}
    for step in range(10):
        assert {role[e.task] for e in stream.episodes(4 * step, 4 * step + 4)} == {stream.step_role(step)}
    first, second = [i for i, r in enumerate(stream.role_steps) if r == "referee"]
    assert second - first == 5  # spread evenly over the run, not bunched
    again = MixedStream(tasks, 40, seed=0, step_size=4)
    assert sequence(again, 17) == sequence(stream, 17)
    with pytest.raises(ValueError, match="whole steps"):
        MixedStream(tasks, 42, seed=0, step_size=4)
    with pytest.raises(ValueError, match="mixes roles"):
        MixedStream(tasks, 40).step_role(0)
