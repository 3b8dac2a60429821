"""`urpo-kit judge`: row formats, resumable JSONL output, malformed rows, the CLI, the TRL reward adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_referee import FakeReferee, scripted
from typer.testing import CliRunner

from urpo_kit.config.schema import Sampling
from urpo_kit.cli import app
from urpo_kit.errors import UrpoError
from urpo_kit.serve import JudgeRow, JudgeSettings, reward_function
from urpo_kit.serve.batch import done_keys, judge_file
from urpo_kit.referee.rows import validation_message


# --------------------------------------------------------------------------------------------- row formats
@pytest.mark.parametrize(("row", "prompt", "responses", "gold"), [
    ({"prompt": "q", "responses": ["a", "b", "c"]}, "q", ["a", "b", "c"], None),
    ({"prompt": "q", "chosen": "a", "rejected": "b", "other": 1}, "q", ["a", "b"], 0),
    ({"prompt": [{"role": "user", "content": "q"}], "responses": ["a", [{"role": "assistant", "content": "b"}]]},
     "q", ["a", "b"], None),
    ({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], "responses": ["a", "b"]},
     "System: s\n\nUser: q", ["a", "b"], None),
    ({"chosen": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: and?\n\nAssistant: And so on.",
      "rejected": "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: and?\n\nAssistant: Anything."},
     "Human: hi\n\nAssistant: yo\n\nHuman: and?", ["And so on.", "Anything."], 0),
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]}, "q", ["a", "b"], 0),
])
def test_accepted_row_formats(row, prompt, responses, gold):
    parsed = JudgeRow.model_validate(row).input
    assert (parsed.prompt, parsed.responses, parsed.gold) == (prompt, responses, gold)


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "q", "responses": ["a"]}, "at least 2 responses"),
    ({"prompt": "q", "responses": ["a", "b"], "chosen": "a", "rejected": "b"}, "not both"),
    ({"prompt": "q", "chosen": "a"}, "both `chosen` and `rejected`"),
    ({"responses": ["a", "b"]}, "`prompt` is missing"),
    ({"chosen": "x", "rejected": "y"}, "share no prefix"),
    ({"prompt": "q", "responses": "ab"}, "responses"),
    ({"prompt": 3, "responses": ["a", "b"]}, "prompt"),
])
def test_malformed_rows_say_what_is_wrong(row, message):
    with pytest.raises(ValidationError) as error:
        JudgeRow.model_validate(row)
    assert message in validation_message(error.value)


# --------------------------------------------------------------------------------------------- batch judging
def write_rows(path: Path, rows: list, extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(n: int) -> list[dict]:
    return [{"id": i, "prompt": f"question {i}", "responses": [str(i % 3), str(i % 3 + 5), "1"]} for i in range(n)]


def read_output(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_judge_file_writes_one_record_per_row(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(5) + [{"prompt": "p", "chosen": "9", "rejected": "2"}])
    backend = FakeReferee()
    report = judge_file(source, tmp_path / "out.jsonl", backend, JudgeSettings(), model="fake", rows_per_batch=4)
    records = read_output(tmp_path / "out.jsonl")
    assert report.judged == 6 and report.status["ok"] == 6 and backend.calls == [4, 2]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6] and records[0]["id"] == 0
    assert all(r["ranking"] == [1, 0, 2] or r["ranking"] == [1, 2, 0] for r in records[:5])
    assert records[-1]["correct"] == 1.0 and report.correct == [1.0]
    assert set(records[0]) >= {"hash", "ranking", "scores", "raw", "status", "agreement", "shown", "parses"}


def test_resume_skips_done_rows_and_judges_new_ones(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(3))
    out = tmp_path / "out.jsonl"
    judge_file(source, out, FakeReferee(), JudgeSettings(), model="fake")
    write_rows(source, rows(5))
    backend = FakeReferee()
    report = judge_file(source, out, backend, JudgeSettings(), model="fake")
    assert (report.already_done, report.judged, backend.calls) == (3, 2, [2])
    assert [r["line"] for r in read_output(out)] == [1, 2, 3, 4, 5]
    # other settings are other judgments: nothing is skipped
    report = judge_file(source, out, FakeReferee(), JudgeSettings(mode="pairwise"), model="fake")
    assert (report.already_done, report.judged) == (0, 5)


def test_a_crash_keeps_the_batches_written_and_a_torn_line_is_dropped(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(6))
    out = tmp_path / "out.jsonl"

    class Crashing(FakeReferee):
        def generate(self, prompts, sampling):
            if self.calls:
                raise RuntimeError("killed")
            return super().generate(prompts, sampling)

    with pytest.raises(RuntimeError):
        judge_file(source, out, Crashing(), JudgeSettings(), model="fake", rows_per_batch=2)
    assert len(read_output(out)) == 2
    with out.open("a") as f:
        f.write(out.read_text().splitlines()[0][:60])  # a write of ours cut short by the crash
    assert len(done_keys(out)) == 2 and out.read_text().endswith("\n")
    backend = FakeReferee()
    report = judge_file(source, out, backend, JudgeSettings(), model="fake", rows_per_batch=2)
    assert (report.already_done, report.judged, backend.calls) == (2, 4, [2, 2])
    assert len(read_output(out)) == 6


def test_malformed_rows_are_reported_with_their_line_and_skipped(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(2), ("{not json", '{"prompt": "q", "responses": ["a"]}', "[1]"))
    report = judge_file(source, tmp_path / "out.jsonl", FakeReferee(), JudgeSettings(), model="fake")
    assert report.judged == 2
    assert [m.line for m in report.malformed] == [3, 4, 5]
    assert "invalid JSON" in report.malformed[0].message and "an object" in report.malformed[2].message
    assert report.malformed[1].message == "`responses` needs at least 2 responses, got 1"


def test_duplicate_rows_are_judged_once(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(2) + rows(2))
    report = judge_file(source, tmp_path / "out.jsonl", FakeReferee(), JudgeSettings(), model="fake")
    assert (report.judged, report.duplicates) == (2, 2)


def test_a_template_edit_re_judges(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = write_rows(tmp_path / "in.jsonl", rows(2))
    template = tmp_path / "mine.j2"
    template.write_text("Rank: {% for c in candidates %}\n[Response {{ c.label }}]\n{{ c.text }}\n"
                        "[End of response {{ c.label }}]{% endfor %}")
    settings = JudgeSettings(template=Path("mine.j2"))
    judge_file(source, tmp_path / "out.jsonl", FakeReferee(), settings, model="fake")
    template.write_text(template.read_text() + "\nBe fair.")
    report = judge_file(source, tmp_path / "out.jsonl", FakeReferee(), settings, model="fake")
    assert report.judged == 2 and read_output(tmp_path / "out.jsonl")[-1]["status"] == "ok"


@pytest.mark.parametrize("content", ["my notes\nlast line without newline", '{"hash": 1}\n', '{"ha',
                                     '{"hash": "' + "a" * 32 + '", "line": 1, broken\n'])
def test_an_output_not_written_by_judge_is_never_touched(tmp_path, content):
    source = write_rows(tmp_path / "in.jsonl", rows(2))
    out = tmp_path / "out.jsonl"
    out.write_text(content)
    with pytest.raises(UrpoError, match="not a record written by `urpo-kit judge`"):
        judge_file(source, out, FakeReferee(), JudgeSettings(), model="fake")
    assert out.read_text() == content


def test_output_equal_to_input_is_refused_and_the_input_kept(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(2))
    before = source.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(source)
    for out in (source, tmp_path / "link.jsonl", tmp_path / "." / "in.jsonl"):
        with pytest.raises(UrpoError, match="is the input file"):
            judge_file(source, out, FakeReferee(), JudgeSettings(), model="fake")
    assert source.read_bytes() == before


def test_text_that_is_not_unicode_is_a_row_error(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", rows(1), ('{"prompt": "\\ud800", "responses": ["a", "b"]}',
                                                         '{"id": "\\udfff", "prompt": "q", "responses": ["a", "b"]}'))
    report = judge_file(source, tmp_path / "out.jsonl", FakeReferee(), JudgeSettings(), model="fake")
    assert report.judged == 1 and [m.line for m in report.malformed] == [2, 3]
    assert "`prompt` is not valid Unicode" in report.malformed[0].message
    assert "`id` is not valid Unicode" in report.malformed[1].message


def test_more_responses_than_letters_is_a_row_error(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", [{"prompt": "q", "responses": [str(i) for i in range(27)]}, *rows(2)])
    report = judge_file(source, tmp_path / "out.jsonl", FakeReferee(), JudgeSettings(labels="letters"), model="fake")
    assert report.judged == 2 and [m.line for m in report.malformed] == [1]
    assert "at most 26" in report.malformed[0].message


# --------------------------------------------------------------------------------------------- CLI
def test_cli_judge_refuses_a_folder_as_output_before_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setattr("urpo_kit.serve.settings.load_backend", lambda *a, **k: pytest.fail("model loaded"))
    source = write_rows(tmp_path / "in.jsonl", rows(1))
    folder = CliRunner().invoke(app, ["judge", "-i", str(source), "-o", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output and folder.exception.__class__ is SystemExit


def test_cli_judge_reports_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr("urpo_kit.serve.settings.load_backend", lambda *a, **k: FakeReferee())
    source = write_rows(tmp_path / "in.jsonl", rows(3), ('{"prompt": "q"}',))
    args = ["judge", "-i", str(source), "-o", str(tmp_path / "out.jsonl"), "--debias", "both_orders"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1, first.output  # a malformed row: reported, the rest judged
    assert f"{source}:4:" in first.output and "give `responses`" in first.output
    assert "both-orders agreement" in first.output
    second = CliRunner().invoke(app, args)
    assert "already in the output" in second.output and len(read_output(tmp_path / "out.jsonl")) == 3


def test_cli_judge_with_a_tiny_model(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "y"}])
    result = CliRunner().invoke(app, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                                      "--mode", "pairwise", "--max-new-tokens", "4", "--temperature", "1.0"])
    assert result.exit_code == 0, result.output
    [record] = read_output(tmp_path / "o.jsonl")
    assert record["attempts"] == 1 and record["status"] in ("ok", "failed") and len(record["raw"]) == 1


def test_cli_help_lists_the_row_formats():
    result = CliRunner().invoke(app, ["judge", "--help"])
    assert '"chosen"' in result.output and "Assistant:" in result.output


# --------------------------------------------------------------------------------------------- reward adapter
def test_reward_function_groups_completions_by_prompt():
    backend = FakeReferee()
    fn = reward_function(backend, mode="listwise")
    prompts = ["p1"] * 3 + [[{"role": "user", "content": "p2"}]] * 2 + ["alone"]
    completions = ["2", "8", "5", [{"role": "assistant", "content": "1"}], [{"role": "assistant", "content": "3"}],
                   "9"]
    rewards = fn(prompts=prompts, completions=completions, completion_ids=None, trainer_state=None)
    assert rewards == [0.0, 1.0, 0.5, 0.0, 1.0, 0.5]
    assert backend.calls == [2] and fn.__name__ == "urpo_referee_listwise"


@pytest.mark.parametrize("mode", ["pairwise", "pointwise"])
def test_reward_function_in_other_modes(mode):
    fn = reward_function(FakeReferee(), mode=mode, settings=JudgeSettings(debias="both_orders"))
    rewards = fn(["p", "p", "p"], ["3", "9", "1"])
    assert rewards.index(max(rewards)) == 1 and rewards.index(min(rewards)) == 2


def test_reward_function_failed_parse_is_no_signal():
    assert reward_function(scripted("hmm"))(["p", "p"], ["a", "b"]) == [0.5, 0.5]


def test_reward_function_refuses_local_settings_for_a_server():
    with pytest.raises(ValueError, match="server"):
        reward_function("http://127.0.0.1:1", settings=JudgeSettings())


def test_reward_function_with_a_loaded_model():
    from urpo_kit.models import tiny_model

    model, tokenizer = tiny_model()
    fn = reward_function(model, tokenizer=tokenizer, settings=JudgeSettings(sampling=Sampling(temperature=0.0, top_p=1.0, max_new_tokens=4)))
    rewards = fn(["p", "p", "q", "q"], ["a", "b", "c", "d"])
    assert len(rewards) == 4 and all(0.0 <= r <= 1.0 for r in rewards)
