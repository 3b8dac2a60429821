"""What `train` checks before it runs (issue 12, items 6 and 10): the recipe against the run's on resume, finite
numbers, a writable run folder, skipped rows and empty prompts reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_train import recipe_at, write_tasks
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.compiler import prepare_task
from urpo_kit.train.resume import ResumeError, check_resume, write_run_info


def started_run(tmp_path: Path) -> Path:
    """A run folder as `train` leaves it after step 2: the resolved recipe and a complete checkpoint."""
    recipe = recipe_at(tmp_path)
    run = Path(recipe.output_dir)
    write_run_info(run, recipe, {"fingerprint": "fp"})
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    return run


@pytest.mark.parametrize(("override", "named"), [
    ("grpo.lr=0.5", "grpo.lr: 0.001 -> 0.5"),
    ("model.lora={r: 8}", "model.lora: None -> "),
    ("grpo.group_size=4", "grpo.group_size: 2 -> 4"),
])
def test_resume_refuses_a_change_it_cannot_apply_naming_the_field(tmp_path: Path, override: str, named: str):
    run = started_run(tmp_path)
    with pytest.raises(ResumeError, match="changed since the run started") as info:
        check_resume(run, recipe_at(tmp_path, override), "fp", resume=True)
    assert named in str(info.value)


def test_resume_applies_a_safe_change_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    run = started_run(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert check_resume(run, recipe_at(tmp_path, "grpo.save_steps=5", "roles.player.temperature=0.5"), "fp",
                            resume=True) == run / "checkpoint-2"
    assert "grpo.save_steps: 2 -> 5" in caplog.text and "roles.player.temperature: 1.0 -> 0.5" in caplog.text


def test_resume_without_a_checkpoint_says_it_starts_over(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        assert check_resume(tmp_path / "run", recipe_at(tmp_path), "fp", resume=True) is None
    assert "no complete checkpoint; starting from step 0" in caplog.text


@pytest.mark.parametrize("override", ["tasks.0.weight=.inf", "grpo.lr=.nan"])
def test_infinite_or_nan_numbers_are_located_errors(tmp_path: Path, override: str):
    result = CliRunner().invoke(app, ["validate", str(write_tasks(tmp_path)), "--set", override])
    assert result.exit_code == 2 and "finite number" in result.output, result.output


def test_a_run_folder_that_is_a_file_is_an_error_not_a_traceback(tmp_path: Path):
    recipe = write_tasks(tmp_path)
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["train", str(recipe), f"output_dir={tmp_path / 'file'}"])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_skipped_rows_are_reported_when_training_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from urpo_kit.train.trainer import build_run

    recipe = recipe_at(tmp_path, "tasks.0.overrides={source.max_error_fraction: 0.5}")
    with (tmp_path / "regex.jsonl").open("a") as f:
        f.write("{not json\n")
    with caplog.at_level(logging.WARNING):
        build_run(recipe, progress=False)
    assert "task regex: 1 of 9 rows skipped: row 9: invalid JSON" in caplog.text


def test_a_prompt_that_renders_empty_is_a_skipped_row(tmp_path: Path):
    write_tasks(tmp_path)
    (tmp_path / "regex.jsonl").write_text("".join(json.dumps({"q": q, "pattern": "a"}) + "\n" for q in ("x", " ")))
    prepared = prepare_task(tmp_path / "regex.yaml", ["source.max_error_fraction=0.5"])
    assert [(s.row_number, "renders empty" in s.reason) for s in prepared.rows.skipped] == [(2, True)]
