"""Every shipped task validates: offline ones fully, hub ones against a local fixture with the same columns; and
the GSM8K train file goes end to end through tasks/gsm8k.yaml with every gold answer verifying against itself."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from urpo_kit.compiler import PreparedTask, prepare_task
from urpo_kit.kinds import load_task
from urpo_kit.kinds import PreferenceTask, VerifiableTask
from urpo_kit.rewards import extract_answer, get_verifier, parse_number, parse_ranking, score_ranking
from urpo_kit.sources import LoadedRows
from urpo_kit.kinds.verifiable import gold_as_completion
from urpo_kit.validate import check_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted((ROOT / "tasks").glob("*.yaml"))
FIXTURES = Path(__file__).parent / "fixtures" / "hub"
GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "shared/data/gsm8k/train.jsonl"

# hub task name -> local fixture with the dataset's columns (a new hub task needs an entry here)
HUB_FIXTURES = {
    "gsm8k": "openai_gsm8k.jsonl",
    "math": "math.jsonl",
    "skywork-preference": "skywork_preference.jsonl",
    "alpaca-instructions": "alpaca_instructions.jsonl",
}

SPECS = {path.name: load_task(path) for path in TASKS}
HUB = sorted(name for name, spec in SPECS.items() if spec.source.hf is not None)
OFFLINE = sorted(name for name, spec in SPECS.items() if spec.source.hf is None)


def path_override(path: Path) -> str:
    return "source=" + json.dumps({"path": str(path)})


def each_row(prepared: PreparedTask):
    """The prepared task narrowed to one row at a time, as `check_task` checks the first row."""
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        yield dataclasses.replace(prepared, rows=LoadedRows([row], [number]))


def test_shipped_tasks_exist_and_cover_every_kind() -> None:
    assert len(TASKS) >= 8
    assert {spec.kind for spec in SPECS.values()} == {"verifiable", "preference", "open_ended"}
    assert HUB and OFFLINE
    assert len({spec.name for spec in SPECS.values()}) == len(SPECS)  # names are metric keys


def test_every_hub_task_has_a_fixture() -> None:
    """Fails when a hub task is added without a local fixture (or a fixture is left without its task)."""
    hub_names = {SPECS[name].name for name in HUB}
    assert hub_names == set(HUB_FIXTURES), f"hub tasks {sorted(hub_names)} vs fixtures for {sorted(HUB_FIXTURES)}"
    assert {p.name for p in FIXTURES.glob("*.jsonl")} == set(HUB_FIXTURES.values())


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_task_validates_on_every_row(name: str) -> None:
    prepared = prepare_task(ROOT / "tasks" / name)
    spec = prepared.spec
    assert len(prepared.rows.rows) + len(prepared.rows.skipped) == (spec.source.limit or spec.source.n)
    assert len(prepared.rows.skipped) <= 0.002 * len(prepared.rows.rows)
    assert check_task(prepared)
    sample = prepared if len(prepared.rows.rows) <= 300 else dataclasses.replace(
        prepared, rows=LoadedRows(prepared.rows.rows[:300], prepared.rows.row_numbers[:300]))
    for one in each_row(sample):
        check_task(one)


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_task_has_no_unusable_rows(name: str) -> None:
    prepared = prepare_task(ROOT / "tasks" / name)
    assert not prepared.rows.skipped, prepared.rows.skipped[:3]


@pytest.mark.parametrize("name", HUB)
def test_hub_task_validates_against_its_fixture(name: str) -> None:
    spec = SPECS[name]
    assert spec.source.hf and "/" in spec.source.hf  # the real hub id stays in the file
    fixture = FIXTURES / HUB_FIXTURES[spec.name]
    prepared = prepare_task(ROOT / "tasks" / name, [path_override(fixture)])
    n_lines = len(fixture.read_text(encoding="utf-8").splitlines())
    assert len(prepared.rows.rows) == n_lines and not prepared.rows.skipped  # every fixture row renders
    for one in each_row(prepared):
        summary = check_task(one)
        assert summary


@pytest.mark.parametrize("name", [n for n in OFFLINE + HUB if SPECS[n].kind == "preference"])
def test_preference_tasks_score_a_wrong_ranking_below_one(name: str) -> None:
    """The gold ranking parses back to a perfect score and its reverse does not (the check can fail)."""
    spec = SPECS[name]
    assert isinstance(spec, PreferenceTask)
    overrides = [path_override(FIXTURES / HUB_FIXTURES[spec.name])] if name in HUB else []
    prepared = prepare_task(ROOT / "tasks" / name, overrides, limit=20)
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        ep = prepared.task.episode(row, row_number=number, seed=0, position=number)
        labels = ep.payload.labels
        reverse = "Ranking: " + " > ".join(f"[{labels[i]}]" for i in reversed(ep.payload.gold))
        assert score_ranking(parse_ranking(reverse, labels), ep.payload.gold, spec.score) < 1.0


@pytest.mark.parametrize("name", [n for n in OFFLINE + HUB if SPECS[n].kind == "verifiable"])
def test_verifiable_tasks_reject_a_wrong_answer(name: str) -> None:
    spec = SPECS[name]
    assert isinstance(spec, VerifiableTask)
    overrides = [path_override(FIXTURES / HUB_FIXTURES[spec.name])] if name in HUB else []
    prepared = prepare_task(ROOT / "tasks" / name, overrides, limit=20)
    verify = get_verifier(spec.answer.verifier)
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        gold = prepared.task.episode(row, row_number=number).payload.gold
        # "gold+1" under last-number extraction is "1", which is right when the gold is 1: append a digit instead
        off = f"{gold}1" if spec.answer.extract == "last_number" else f"{gold}+1"
        wrong = extract_answer(gold_as_completion(spec.answer.extract, off), spec.answer.extract)
        assert verify(wrong, gold, **spec.answer.verifier_args) == 0.0, (gold, wrong)


# ------------------------------------------------------------------------------------------------ GSM8K
@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason=f"{GSM8K_TRAIN} is absent")
def test_gsm8k_train_end_to_end() -> None:
    """All 7,473 rows of the real file through the shipped task: every gold extracts and verifies against itself."""
    prepared = prepare_task(ROOT / "tasks" / "gsm8k.yaml", [path_override(GSM8K_TRAIN)])
    spec = prepared.spec
    raw_lines = GSM8K_TRAIN.read_text(encoding="utf-8").splitlines()
    assert len(raw_lines) == 7473
    assert len(prepared.rows.rows) == 7473 and not prepared.rows.skipped
    verify = get_verifier(spec.answer.verifier)
    failures = []
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        ep = prepared.task.episode(row, row_number=number)
        assert ep.payload.gold == row["answer"].split("####")[-1].strip()
        assert re.fullmatch(r"-?(\d+|\d{1,3}(,\d{3})+)(\.\d+)?", ep.payload.gold), (number, ep.payload.gold)
        assert ep.messages[-1]["content"] == row["question"]
        completion = gold_as_completion(spec.answer.extract, ep.payload.gold)
        assert completion == f"The answer is \\boxed{{{ep.payload.gold}}}."
        extracted = extract_answer(completion, spec.answer.extract)
        if extracted is None or verify(extracted, ep.payload.gold, **spec.answer.verifier_args) != 1.0:
            failures.append((number, ep.payload.gold, extracted))
        elif number % 250 == 0:  # and a nearby wrong number is refused
            wrong = str(parse_number(ep.payload.gold)[0] + 1)
            assert verify(wrong, ep.payload.gold, **spec.answer.verifier_args) == 0.0, (number, ep.payload.gold, wrong)
    assert not failures, failures[:10]
