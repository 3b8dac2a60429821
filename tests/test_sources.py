"""urpo_kit.sources: file formats, malformed rows, ordering, generators and the offline hub path."""

from __future__ import annotations

import csv
import gzip
import json
import re
import time
from pathlib import Path

import pytest

from urpo_kit.config.schema import Source
from urpo_kit.errors import CodeNotAllowed, SourceError, SourceUnavailable
from urpo_kit.sources import GENERATORS, describe_source, load_rows
from urpo_kit.sources import files as files_mod
from urpo_kit.sources import hf as hf_mod

ROWS = [{"q": f"question {i}", "a": str(i)} for i in range(1, 21)]
FIXTURES = Path(__file__).parent / "fixtures" / "hub"
GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "shared/data/gsm8k/train.jsonl"


def write_jsonl(path: Path, lines: list[str]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def jsonl_lines(rows: list[dict]) -> list[str]:
    return [json.dumps(r) for r in rows]


# ------------------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz", "d.json", "d.json.gz", "d.csv", "d.csv.gz", "d.parquet"])
def test_each_format_reads_the_same_rows(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if ".jsonl" in name:
        write_jsonl(path, jsonl_lines(ROWS))
    elif ".json" in name:
        payload = json.dumps(ROWS)
        path.write_bytes(gzip.compress(payload.encode()) if name.endswith(".gz") else payload.encode())
    elif ".csv" in name:
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "wt", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["q", "a"])
            writer.writeheader()
            writer.writerows(ROWS)
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    loaded = load_rows(Source(path=path))
    assert loaded.rows == ROWS
    assert loaded.total_seen == 20 and not loaded.skipped
    first = 2 if ".csv" in name else 1  # csv row numbers are line numbers, after the header
    assert loaded.row_numbers == list(range(first, first + 20))


def test_json_object_with_one_list_field(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"version": 2, "data": ROWS[:3]}))
    assert load_rows(Source(path=path)).rows == ROWS[:3]


def test_explicit_format_and_gzip_sniffed_without_suffix(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_bytes(gzip.compress("\n".join(jsonl_lines(ROWS[:4])).encode()))
    assert load_rows(Source(path=path, format="jsonl")).rows == ROWS[:4]
    with pytest.raises(SourceError, match="format"):
        load_rows(Source(path=path))


def test_relative_path_resolved_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "x.jsonl", jsonl_lines(ROWS[:2]))
    loaded = load_rows(Source(path=Path("data/x.jsonl")), base_dir=tmp_path)
    assert loaded.rows == ROWS[:2]
    assert loaded.description == "data/x.jsonl"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """The task file and its `source.path` line are added by the task's caller (tests/test_authoring.py)."""
    with pytest.raises(SourceError) as info:
        load_rows(Source(path=Path("nope.jsonl")), base_dir=tmp_path)
    assert str(tmp_path / "nope.jsonl") in str(info.value)


# ------------------------------------------------------------------------------------------------ malformed rows
def test_malformed_jsonl_lines_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    lines = jsonl_lines(ROWS)
    lines[4] = "{not json"
    lines[9] = "[1, 2]"
    lines.insert(12, "")  # blank lines are ignored but still numbered
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    loaded = load_rows(Source(path=path, max_error_fraction=0.2))
    assert [s.row_number for s in loaded.skipped] == [5, 10]
    assert all(s.reason.startswith("invalid JSON") for s in loaded.skipped)
    assert "list" in loaded.skipped[1].reason
    assert len(loaded.rows) == 18 and loaded.total_seen == 20
    assert loaded.row_numbers[:5] == [1, 2, 3, 4, 6]
    assert loaded.row_numbers[-1] == 21


def test_too_many_malformed_rows_raise_with_count_and_rows(tmp_path: Path) -> None:
    lines = jsonl_lines(ROWS[:10])
    lines[2] = lines[6] = "oops"
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(SourceError) as info:
        load_rows(Source(path=path, max_error_fraction=0.1))
    message = str(info.value)
    assert "2 of 10 rows" in message and "row 3: invalid JSON" in message and "row 7" in message
    assert "bad.jsonl" in message
    assert len(load_rows(Source(path=path, max_error_fraction=0.2)).rows) == 8


def test_csv_rows_with_the_wrong_width_are_malformed(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("q,a\nx,1\ny\nz,3,extra\nw,4\n")
    loaded = load_rows(Source(path=path, max_error_fraction=0.5))
    assert loaded.rows == [{"q": "x", "a": "1"}, {"q": "w", "a": "4"}]
    assert [s.row_number for s in loaded.skipped] == [3, 4]


# ------------------------------------------------------------------------------------------------ order
def test_shuffle_is_seeded_then_skip_then_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", jsonl_lines(ROWS))
    a = load_rows(Source(path=path, shuffle=True, seed=3))
    b = load_rows(Source(path=path, shuffle=True, seed=3))
    c = load_rows(Source(path=path, shuffle=True, seed=4))
    assert a.rows == b.rows and a.rows != c.rows and a.rows != ROWS
    assert sorted(a.row_numbers) == list(range(1, 21))
    assert [r["a"] for r in a.rows] == [str(n) for n in a.row_numbers]
    held_out = load_rows(Source(path=path, shuffle=True, seed=3, skip=5, limit=4))
    assert held_out.rows == a.rows[5:9] and held_out.row_numbers == a.row_numbers[5:9]
    train = load_rows(Source(path=path, shuffle=True, seed=3, limit=5))
    assert not {r["q"] for r in train.rows} & {r["q"] for r in held_out.rows}


def test_limit_without_shuffle_stops_reading_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = jsonl_lines(ROWS)
    lines[1] = "broken"
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    read: list[int] = []
    real = files_mod.READERS["jsonl"]

    def counting(p: Path) -> files_mod.Rows:
        for raw in real(p):
            read.append(raw[0])
            yield raw

    monkeypatch.setitem(files_mod.READERS, "jsonl", counting)
    loaded = load_rows(Source(path=path, skip=2, limit=3, max_error_fraction=0.5))
    assert [r["a"] for r in loaded.rows] == ["4", "5", "6"]
    assert loaded.total_seen == 6 and read == [1, 2, 3, 4, 5, 6]


def test_skip_beyond_the_rows_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", jsonl_lines(ROWS[:3]))
    with pytest.raises(SourceError, match="skip=5"):
        load_rows(Source(path=path, skip=5))


# ------------------------------------------------------------------------------------------------ generators
COLUMNS = {
    "arithmetic": {"question", "answer", "difficulty", "value"},
    "preference_pairs": {"prompt", "chosen", "rejected", "category"},
    "preference_ranked": {"prompt", "ranked"},
    "instructions": {"instruction", "category"},
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_deterministic_distinct_and_well_formed(name: str) -> None:
    rows = load_rows(Source(generator=name, n=200, seed=1)).rows
    assert rows == load_rows(Source(generator=name, n=200, seed=1)).rows
    assert rows != load_rows(Source(generator=name, n=200, seed=2)).rows
    assert len(rows) == 200 and all(set(r) == COLUMNS[name] for r in rows)
    assert all(isinstance(v, str) and v for r in rows for k, v in r.items() if k not in ("difficulty", "value", "ranked"))
    main = {"arithmetic": "question", "instructions": "instruction"}.get(name, "prompt")
    assert len({r[main] for r in rows}) > 100  # variety, not a handful of templates


def _check_worked_solution(text: str) -> int:
    """Every `a op b ... = c` line must be right; returns the last result (the answer)."""
    results = []
    for line in text.splitlines():
        m = re.search(r"(\$?\d+(?: [-+x/] \$?\d+)+) = \$?(\d+)", line)
        if m:
            expr = m.group(1).replace("$", "").replace(" x ", " * ").replace(" / ", " // ")
            assert eval(expr) == int(m.group(2)), line  # noqa: S307 - digits and operators only
            results.append(int(m.group(2)))
    assert results, text
    return results[-1]


@pytest.mark.parametrize("steps", [1, 2, "mixed"])
def test_arithmetic_answers_are_correct(steps: int | str) -> None:
    rows = GENERATORS["arithmetic"](300, 7, max_value=50, steps=steps)
    for row in rows:
        final = int(row["answer"].rsplit("####", 1)[1])
        assert final == row["value"] == _check_worked_solution(row["answer"])
        assert row["value"] >= 0
    difficulties = {r["difficulty"] for r in rows}
    assert difficulties == ({1} if steps == 1 else {2} if steps == 2 else {1, 2})


def test_arithmetic_rejects_bad_params() -> None:
    with pytest.raises(SourceError, match="steps"):
        load_rows(Source(generator="arithmetic", n=3, params={"steps": 3}))
    with pytest.raises(SourceError, match="max_valu"):
        load_rows(Source(generator="arithmetic", n=3, params={"max_valu": 3}))


def test_preference_pairs_have_a_real_difference() -> None:
    rows = GENERATORS["preference_pairs"](400, 5)
    assert {r["category"] for r in rows} == {"math", "helpful", "format"}
    for row in rows:
        assert row["chosen"] != row["rejected"]
        if row["category"] == "math":
            answer = int(row["chosen"].rsplit(" ", 1)[1].rstrip("."))
            assert answer == _check_worked_solution(row["chosen"])
            assert int(row["rejected"].rsplit(" ", 1)[1].rstrip(".")) != answer
    only_math = GENERATORS["preference_pairs"](20, 5, categories=["math"])
    assert {r["category"] for r in only_math} == {"math"}


@pytest.mark.parametrize("candidates", [3, 4])
def test_preference_ranked_orders_best_first(candidates: int) -> None:
    for row in GENERATORS["preference_ranked"](100, 2, candidates=candidates):
        ranked = row["ranked"]
        assert len(ranked) == candidates and len(set(ranked)) == candidates
        correct = _check_worked_solution(ranked[0])
        assert int(ranked[1].rsplit(" ", 1)[1].rstrip(".")) != correct


def test_instructions_have_hundreds_of_distinct_prompts() -> None:
    rows = GENERATORS["instructions"](2000, 0)
    assert len({r["instruction"] for r in rows}) >= 500
    assert len({r["category"] for r in rows}) >= 8


def test_dotted_generator_needs_allow_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_gen.py").write_text("def rows(n, seed):\n    return [{'x': seed + i} for i in range(n)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = Source(generator="my_gen:rows", n=3, seed=5)
    with pytest.raises(CodeNotAllowed, match="allow-code") as info:
        load_rows(source)
    assert load_rows(source, allow_code=True).rows == [{"x": 5}, {"x": 6}, {"x": 7}]
    with pytest.raises(SourceError, match="no attribute"):
        load_rows(Source(generator="my_gen:missing"), allow_code=True)


def test_unknown_generator_lists_the_builtins() -> None:
    with pytest.raises(SourceError, match="arithmetic"):
        load_rows(Source(generator="arithmetik"))


# ------------------------------------------------------------------------------------------------ hugging face
def test_describe_source() -> None:
    assert describe_source(Source(hf="openai/gsm8k", config="main")) == "hf:openai/gsm8k[main]/train"
    assert describe_source(Source(path=Path("data/x.jsonl"))) == "data/x.jsonl"
    assert describe_source(Source(generator="arithmetic", n=5, params={"steps": 1})).startswith("generator:arithmetic(")


@pytest.mark.parametrize("mode", ["env", "unreachable"])
def test_hf_offline_fails_fast_with_a_path_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    if mode == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setattr(hf_mod, "hub_reachable", lambda endpoint=None: False)
    start = time.monotonic()
    with pytest.raises(SourceUnavailable) as info:
        load_rows(Source(hf="urpo-kit-tests/no-such-dataset", split="train", limit=1))
    assert time.monotonic() - start < 10
    assert "urpo-kit-tests/no-such-dataset" in str(info.value) and "path:" in str(info.value)


def test_hub_probe_is_quick_for_an_unroutable_endpoint() -> None:
    start = time.monotonic()
    assert hf_mod.hub_reachable.__wrapped__("https://localhost:9") is False
    assert time.monotonic() - start < hf_mod.PROBE_TIMEOUT_S + 1


# ------------------------------------------------------------------------------------------------ fixtures and data
HUB_FIXTURES = {
    "openai_gsm8k.jsonl": {"question", "answer"},
    "math.jsonl": {"problem", "solution", "answer", "subject", "level", "unique_id"},
    "skywork_preference.jsonl": {"chosen", "rejected", "source"},
    "alpaca_instructions.jsonl": {"instruction", "input", "output", "text"},
}


@pytest.mark.parametrize("name", sorted(HUB_FIXTURES))
def test_hub_fixtures_have_the_hub_columns(name: str) -> None:
    loaded = load_rows(Source(path=FIXTURES / name))
    assert 3 <= len(loaded.rows) <= 5 and not loaded.skipped
    assert all(set(r) == HUB_FIXTURES[name] for r in loaded.rows)
    if name == "openai_gsm8k.jsonl":
        assert all(re.search(r"#### \d+$", r["answer"]) for r in loaded.rows)
    if name == "skywork_preference.jsonl":
        for row in loaded.rows:
            for side in ("chosen", "rejected"):
                assert [m["role"] for m in row[side]] == ["user", "assistant"]


@pytest.mark.skipif(not GSM8K_TRAIN.exists(), reason="shared GSM8K copy not present")
def test_shared_gsm8k_head() -> None:
    loaded = load_rows(Source(path=GSM8K_TRAIN, limit=5))
    assert len(loaded.rows) == 5 and loaded.total_seen == 5
    assert all(set(r) == {"question", "answer"} and "####" in r["answer"] for r in loaded.rows)
