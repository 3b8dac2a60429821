"""Evaluation that matches its anchors: the length-controlled win rate on synthetic judgments whose length effect is
known, the check that a suite does not score a recipe's training rows, the shipped suites' splits, and the quiet
console that keeps third-party bars out of the output."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.config.refs import override_strings
from urpo_kit.config.loader import load_recipe
from urpo_kit.kinds import load_task
from urpo_kit.config.suite import load_suite
from urpo_kit.errors import ConfigError
from urpo_kit.eval import run_suite
from urpo_kit.eval.length_control import length_controlled_win_rate
from urpo_kit.eval.overlap import recipe_overlaps, suite_overlaps
from urpo_kit.models.tiny import tiny_model
from urpo_kit.quiet import is_quiet, quiet_libraries, silent_tqdm

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "recipes" / "eval").glob("*.yaml"))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def judgments(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answer and reference lengths where the model's answers run longer than the references on most rows, and the
    standardised length difference tanh(delta / std) that drives the synthetic judge."""
    rng = np.random.RandomState(seed)
    reference = rng.randint(200, 400, n)
    answer = reference + rng.randint(-100, 400, n)
    delta = answer - reference
    return answer, reference, np.tanh(delta / np.std(delta, ddof=1))


# ------------------------------------------------------------------------------------------------ LC win rate
def test_a_judge_that_only_rewards_length_has_an_lc_win_rate_of_one_half() -> None:
    """Equal quality at equal length (model term 0), a strong preference for the longer answer (weight 2): the raw
    rate is inflated to ~0.73, the length-controlled one comes back to 0.5 and the fit recovers both coefficients."""
    answer, reference, length = judgments(400)
    preference = sigmoid(2.0 * length)  # soft labels: the judge's exact preference probabilities
    lc = length_controlled_win_rate(preference, answer, reference)
    assert preference.mean() > 0.7
    assert lc.win_rate == pytest.approx(0.5, abs=1e-4)
    assert lc.model_term == pytest.approx(0.0, abs=1e-3) and lc.length_weight == pytest.approx(2.0, abs=1e-3)


def test_sampled_judgments_and_instruction_difficulty() -> None:
    answer, reference, length = judgments(3000, seed=1)
    rng = np.random.RandomState(2)
    wins = (rng.rand(3000) < sigmoid(2.0 * length)).astype(float)
    lc = length_controlled_win_rate(wins, answer, reference)
    assert wins.mean() > 0.7 and lc.win_rate == pytest.approx(0.5, abs=0.03)
    assert lc.length_weight == pytest.approx(2.0, abs=0.3)
    difficulty = rng.randn(3000)  # AlpacaEval's per-instruction term: predicted with it, at zero length difference
    preference = sigmoid(0.5 + 2.0 * length + 1.0 * difficulty)
    lc = length_controlled_win_rate(preference, answer, reference, difficulty)
    assert lc.win_rate == pytest.approx(sigmoid(0.5 + difficulty).mean(), abs=1e-4)
    assert lc.difficulty_weight == pytest.approx(1.0, abs=1e-3)


def test_without_a_length_effect_lc_equals_the_raw_rate() -> None:
    answer, reference, _ = judgments(500, seed=3)
    wins = (np.random.RandomState(4).rand(500) < 0.3).astype(float)
    assert length_controlled_win_rate(wins, answer, reference).win_rate == pytest.approx(wins.mean(), abs=0.02)


def test_degenerate_inputs_stay_finite() -> None:
    assert length_controlled_win_rate([1.0], [5], [1]).win_rate > 0.99  # one row: no spread, no length term
    same = length_controlled_win_rate([1.0, 0.0, 0.5], [7, 8, 9], [2, 3, 4])  # equal differences: no length term
    assert same.length_weight == 0.0 and same.win_rate == pytest.approx(0.5, abs=1e-6)
    assert 0.9 < length_controlled_win_rate([1.0] * 3, [5, 6, 9], [1, 1, 1]).win_rate < 1.0  # all wins: finite
    with pytest.raises(ValueError):
        length_controlled_win_rate([], [], [])


WINRATE_SUITE = """\
name: w
winrate:
  - task: {task}
    overrides: {{source: {{path: {rows}}}}}
    reference: "{{{{ output }}}}"
    difficulty: "{difficulty}"
limit: 3
sampling:
  player: {{max_new_tokens: 4}}
  referee: {{max_new_tokens: 4}}
"""


def winrate_suite(tmp_path: Path, difficulty: str) -> Path:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": "x" * (i + 1),
                                        "hard": i / 2}) + "\n" for i in range(3)))
    path = tmp_path / "w.yaml"
    path.write_text(WINRATE_SUITE.format(task=ROOT / "tasks" / "alpaca-instructions.yaml", rows=rows,
                                         difficulty=difficulty))
    return path


def test_the_win_rate_reports_lc_beside_the_raw_rate(tmp_path: Path) -> None:
    model, tokenizer = tiny_model()
    metrics = run_suite(load_suite(winrate_suite(tmp_path, "{{ hard }}")), model, tokenizer, tmp_path / "run",
                        progress=False)
    assert 0.0 <= metrics["winrate/alpaca-instructions/lc_win_rate"] <= 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| LC win rate | length weight |" in report and "arXiv 2404.04475" in report
    assert re.search(r"\| winrate/alpaca-instructions/win_rate \| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \|", report)


def test_a_difficulty_that_is_no_number_is_located_in_the_suite(tmp_path: Path) -> None:
    path = winrate_suite(tmp_path, "{{ instruction }}")
    model, tokenizer = tiny_model()
    with pytest.raises(ConfigError) as err:
        run_suite(load_suite(path), model, tokenizer, progress=False)
    assert str(err.value) == f"{path}:6:17: winrate.0.difficulty: renders 'Say 0.', not a finite number (row 1)"


# ------------------------------------------------------------------------------------------------ splits
def test_the_gsm8k_suite_scores_the_test_split_and_no_training_rows() -> None:
    """The paper recipe trains on GSM8K's train split; the GSM8K suite scores its test split."""
    suite = load_suite(ROOT / "recipes" / "eval" / "gsm8k.yaml")
    source = load_task(suite.player[0].task, ["source.split=test"]).source
    assert (source.hf, source.config, source.split) == ("openai/gsm8k", "main", "test")
    paper = load_recipe(ROOT / "recipes" / "paper.yaml")
    assert suite_overlaps(paper, suite) == [] and recipe_overlaps(paper) == []
    on_train = load_suite(ROOT / "recipes" / "eval" / "gsm8k.yaml", ["player.0.overrides={source.split: train}"])
    (warning,) = suite_overlaps(paper, on_train)
    assert re.fullmatch(rf"{re.escape(str(ROOT / 'recipes' / 'eval' / 'gsm8k.yaml'))}:\d+: player\.0 evaluates "
                        rf"hf:openai/gsm8k\[main\]/train, rows that task `gsm8k` trains on "
                        rf"\({re.escape(str(ROOT / 'recipes' / 'paper.yaml'))}:\d+: tasks\.0\); .*", warning), warning


def test_held_out_rows_of_the_same_source_do_not_warn_and_shared_rows_do() -> None:
    """The quickstart's held-out suite reads the rows after the 2000 its tasks train on; without `skip` it would read
    the training rows themselves."""
    quickstart = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert recipe_overlaps(quickstart) == []
    path = ROOT / "recipes" / "eval" / "quickstart-heldout.yaml"
    leaky = load_suite(path, ["player.0.overrides={source.n: 2128}"])
    (warning,) = suite_overlaps(quickstart, leaky)
    assert "player.0 evaluates generator:arithmetic" in warning and "task `arithmetic-onestep`" in warning


def test_local_files_overlap_by_path_and_row_window(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("name: t\nkind: verifiable\nsource: {path: rows.jsonl, limit: 100}\n"
                                     "player: {prompt: '{{ q }}'}\nanswer: {gold: '{{ a }}'}\n")
    (tmp_path / "r.yaml").write_text("tasks: [{task: t.yaml}]\n")
    recipe = load_recipe(tmp_path / "r.yaml")

    def suite(overrides: str) -> str:
        (tmp_path / "s.yaml").write_text(f"name: s\nplayer:\n  - task: t.yaml\n    overrides: {overrides}\n")
        return "\n".join(suite_overlaps(recipe, load_suite(tmp_path / "s.yaml")))

    assert f"{tmp_path / 's.yaml'}:3: player.0 evaluates {tmp_path / 'rows.jsonl'}" in suite("{}")
    assert suite("{source.skip: 100}") == ""  # rows 101-200: held out
    assert suite("{source: {path: other.jsonl}}") == ""
    assert "player.0" in suite("{source.skip: 100, source.shuffle: true}")  # another order: may share rows


def test_validate_warns_when_a_recipe_evaluates_its_training_rows(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nplayer:\n  - task: {ROOT / 'tasks' / 'arithmetic-onestep.yaml'}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"tasks: [{{task: {ROOT / 'tasks' / 'arithmetic-onestep.yaml'}}}]\n"
                      f"eval: {{suites: [{suite}]}}\n")
    result = CliRunner().invoke(app, ["validate", str(recipe)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert re.search(rf"^warning {re.escape(str(suite))}:3: player\.0 evaluates generator:arithmetic.*"
                     rf"task `arithmetic-onestep` trains on \({re.escape(str(recipe))}:1: tasks\.0\)",
                     result.output, re.MULTILINE), result.output


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_every_shipped_suite_names_the_split_of_its_hub_data(path: Path) -> None:
    """A hub source's split defaults to `train`; a suite must not score that default by accident."""
    raw = yaml.safe_load(path.read_text())
    suite = load_suite(path)
    for role in ("player", "referee", "winrate"):
        for bench, written in zip(getattr(suite, role), raw.get(role, [])):
            if bench.task is not None:
                hub = load_task(bench.task, override_strings(bench.overrides)).source.hf
                named = "source.split" in written.get("overrides", {})
            else:
                hub = bench.source.hf if getattr(bench, "source", None) is not None else None
                named = "split" in written.get("source", {})
            assert hub is None or named, f"{path.name}: {role} {bench.name or bench.task} reads {hub} without a split"


# ------------------------------------------------------------------------------------------------ quiet console
def test_quiet_libraries_hides_bars_and_info_logs_and_restores_them() -> None:
    import datasets
    import transformers

    logger = logging.getLogger("datasets")
    before = (transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(), logger.level)
    with quiet_libraries():
        assert is_quiet()
        assert not transformers.utils.logging.is_progress_bar_enabled() and not datasets.is_progress_bar_enabled()
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    assert not is_quiet()
    assert (transformers.utils.logging.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
            logger.level) == before
    with quiet_libraries(verbose=True):
        assert not is_quiet() and transformers.utils.logging.is_progress_bar_enabled()


def test_lm_evals_request_bars_are_silent_only_when_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    """lm-eval passes `disable=` itself, so its bars are silenced at the class it imported."""
    import lm_eval.models.huggingface as hf

    def draw() -> str:
        for _ in hf.tqdm(range(3), desc="Running generate_until requests", disable=False):
            pass
        return capsys.readouterr().err

    original = hf.tqdm
    with quiet_libraries(), silent_tqdm(hf):
        assert draw() == ""
    assert hf.tqdm is original
    with silent_tqdm(hf):
        assert "Running generate_until requests" in draw()


def test_the_step_line_gives_rewards_per_role_step_time_and_eta() -> None:
    from urpo_kit.train.callbacks import step_line

    logs = {"a/player/reward_mean": 0.5, "b/player/reward_mean": 0.25, "c/referee/reward_mean": 1.0, "reward": 0.6,
            "c/referee/accuracy": 0.0}
    assert step_line(3, 8, logs, 12.34, 61.7) == "step 3/8  player 0.375  referee 1.000  12.3 s/step  ETA 1:02"
    assert step_line(1, 300, {"a/player/reward_mean": 0.0}, 30.0, 3725.0) == \
        "step 1/300  player 0.000  30.0 s/step  ETA 1:02:05"


@pytest.mark.parametrize("command", ["train", "eval"])
def test_train_and_eval_take_verbose(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--verbose" in result.output


def test_eval_hides_dataset_and_lm_eval_bars_unless_verbose(tmp_path: Path) -> None:
    """A player benchmark goes through lm-eval: its split generation and request bars show with --verbose only."""
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: q\nplayer:\n  - task: {ROOT / 'tasks' / 'arithmetic.yaml'}\n"
                     "    overrides: {source.n: 2002, source.skip: 2000}\nlimit: 2\n"
                     "sampling: {player: {max_new_tokens: 4}}\n")
    outputs = []
    for flags in ([], ["--verbose"]):
        result = CliRunner().invoke(app, ["eval", str(suite), "--model", "tiny:llama", "--output",
                                          str(tmp_path / f"run{len(outputs)}"), *flags], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    quiet, verbose = outputs
    assert "player/arithmetic/accuracy" in quiet and "Generating test split" in verbose
    assert "Running generate_until requests" in verbose
    assert "Generating test split" not in quiet and "Running generate_until" not in quiet and "it/s" not in quiet
