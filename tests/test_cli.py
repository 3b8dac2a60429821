"""The `urpo-kit` command line: validate, render, tasks; located one-line errors and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.compiler import prepare_task
from urpo_kit.kinds import load_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted((ROOT / "tasks").glob("*.yaml"))
# `error FILE:LINE[:COL]: FIELD: MESSAGE` (the loader and validate both use this shape)
ERROR_LINE = re.compile(r"^error (?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<field>[^\s:]+): (?P<message>.+)$")

GOOD = """\
name: t
kind: verifiable
source: {generator: arithmetic, n: 5, seed: 0}
fields: {solution: answer}
player:
  prompt: "{{ question }}"
answer:
  gold: "{{ solution.split('####')[-1] | trim }}"
  extract: boxed
  verifier: numeric
"""


def offline_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "200", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), extra.get("PYTHONPATH", "")) if p)
    return env


def invoke(*args: str, **env: str):
    result = CliRunner().invoke(app, list(args), env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200", **env})
    # an escaped exception would show up here rather than as a printed traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error")]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


def one_located_error(path: Path, *args: str, line: int, field: str) -> re.Match:
    result = invoke("validate", str(path), *args)
    assert result.exit_code == 2, result.output
    errors = error_lines(result.output)
    assert len(errors) == 1, result.output
    match = ERROR_LINE.match(errors[0])
    assert match, errors[0]
    assert match["file"] == str(path) and int(match["line"]) == line and match["field"] == field, errors[0]
    return match


# ------------------------------------------------------------------------------------------------ validate
def test_validate_all_shipped_tasks_exits_0() -> None:
    """The real entry point, in a fresh process: offline tasks are checked fully, hub tasks warn."""
    proc = subprocess.run([sys.executable, "-m", "urpo_kit", "validate", *map(str, TASKS)], cwd=ROOT,
                          env=offline_env(), capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Traceback" not in output and not error_lines(output)
    hub = {p for p in TASKS if load_task(p).source.hf is not None}
    assert hub, "the shipped tasks include hub datasets"
    for path in TASKS:
        status = "warning" if path in hub else "ok"
        assert re.search(rf"^{status} {re.escape(str(path))}\b", output, re.MULTILINE), (path, output)


def test_validate_good_file(tmp_path: Path) -> None:
    result = invoke("validate", str(write(tmp_path / "t.yaml", GOOD)))
    assert result.exit_code == 0 and re.search(r"^ok .*t\.yaml \(verifiable\): gold '\d+' verifies", result.output,
                                               re.MULTILINE), result.output


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        # misspelt key
        (edited("  extract: boxed", "  extrct: boxed"), 9, "answer.extrct", "did you mean `extract`"),
        (edited("seed: 0}", "sede: 0}"), 3, "source.sede", "did you mean `seed`"),
        # wrong type
        (edited("n: 5,", "n: five,"), 3, "source.n", "valid integer"),
        (GOOD + "reward: {correct: lots}\n", 11, "reward.correct", "valid number"),
        # duplicate key
        (GOOD + "name: u\n", 11, "name", "duplicate key `name` (first at line 1)"),
        (edited("  extract: boxed", "  extract: boxed\n  extract: last_number"), 10, "answer.extract", "duplicate"),
        # missing template variable
        (edited('"{{ question }}"', '"{{ questoin }}"'), 6, "player.prompt", "'questoin' is undefined"),
        (edited("{{ solution.split", "{{ solutoin.split"), 8, "answer.gold", "'solutoin' is undefined"),
        (edited("{solution: answer}", "{solution: answr}"), 4, "fields.solution", "'answr' is undefined"),
        # configuration that only the reward path reveals
        (edited("verifier: numeric", "verifier: numerik"), 10, "answer.verifier", "did you mean `numeric`"),
        (edited("extract: boxed", "extract: boxd"), 9, "answer.extract", "unknown extract method"),
        (edited("verifier: numeric", "verifier: numeric\n  verifier_args: {bogus: 1}"), 11, "answer.verifier_args",
         "bogus"),
        (edited("verifier: numeric", "verifier: exact\n  verifier_args: {nope: 1}"), 11, "answer.verifier_args",
         "nope"),
        # a template reaching outside the sandbox
        (edited('"{{ question }}"', '"{{ question.__class__.__mro__ }}"'), 6, "player.prompt", "unsafe"),
        # user text that looks like rich markup is printed, not interpreted
        (GOOD + '"[/a]": 1\n', 11, "[/a]", "unknown key `[/a]`"),
    ],
)
def test_each_mistake_is_one_located_error(tmp_path: Path, text: str, line: int, field: str, message: str) -> None:
    path = write(tmp_path / "bad.yaml", text)
    match = one_located_error(path, line=line, field=field)
    assert message in match["message"]


def test_misspelt_required_key_is_one_error(tmp_path: Path) -> None:
    one_located_error(write(tmp_path / "bad.yaml", edited("player:", "playr:")), line=5, field="playr")


def test_errors_in_several_files_are_all_reported(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    bad1 = write(tmp_path / "bad1.yaml", edited("n: 5,", "n: five,"))
    bad2 = write(tmp_path / "bad2.yaml", GOOD + "name: u\n")
    result = invoke("validate", str(bad1), str(good), str(bad2))
    assert result.exit_code == 2
    errors = error_lines(result.output)
    assert [ERROR_LINE.match(e)["file"] for e in errors] == [str(bad1), str(bad2)]
    assert re.search(r"^ok .*good\.yaml", result.output, re.MULTILINE)


def test_validate_checks_an_eval_suite_and_the_tasks_it_names(tmp_path: Path) -> None:
    suite = ROOT / "recipes" / "eval" / "quickstart-heldout.yaml"
    result = invoke("validate", str(suite))
    assert result.exit_code == 0, result.output
    assert "-> arithmetic-heldout (verifiable)" in result.output and "-> pairs-heldout (preference)" in result.output
    assert re.search(r"^ok .*quickstart-heldout\.yaml \(eval suite\)$", result.output, re.MULTILINE)
    bad = write(tmp_path / "s.yaml", "name: s\nreferee:\n  - source: {path: x.jsonl}\n    oder: both_orders\n")
    result = invoke("validate", str(bad))
    assert result.exit_code == 2 and "s.yaml:4:5: referee.0.oder: unknown key `oder`" in result.output


def test_validate_refuses_steps_by_role_on_vllm(tmp_path: Path) -> None:
    """Steps by role set the generation length on transformers' generate: with vLLM it is a located error."""
    recipe = write(tmp_path / "r.yaml", f"tasks:\n  - {{task: {ROOT / 'tasks' / 'pairs-synthetic.yaml'}}}\n"
                   "grpo: {steps_by_role: true}\ngeneration: {backend: vllm_server}\n")
    result = invoke("validate", str(recipe), "--allow-path", str(ROOT / "tasks"))
    assert result.exit_code == 2 and "r.yaml:3:23: grpo.steps_by_role: steps by role" in result.output, result.output
    assert "generation.backend: hf (it is vllm_server)" in result.output


def test_validate_without_files_or_with_a_missing_file(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2 and error_lines(result.output) == [f"error {tmp_path / 'nope.yaml'}: file not found"]
    assert invoke("validate").exit_code == 2


def test_validate_with_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", GOOD)
    plain = invoke("validate", str(path), "--set", "answer.verifier=exact", "--set", "answer.extract=last_number")
    assert plain.exit_code == 0, plain.output  # the gold written plainly is its own last number and matches exactly
    result = invoke("validate", str(path), "--set", "source.n=zero")
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert line.startswith("error <override 'source.n=zero'>: source.n: ")


def test_validate_recipe_expands_its_tasks(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "t.yaml", GOOD)
    write(tmp_path / "tasks" / "u.yaml", edited("name: t", "name: u"))
    recipe = write(tmp_path / "recipe.yaml", "tasks:\n  - {task: tasks/t.yaml}\n"
                   "  - {task: tasks/u.yaml, overrides: {answer.verifier: numerik}}\n")
    result = invoke("validate", str(recipe))
    assert result.exit_code == 2
    assert re.search(rf"^ok {re.escape(str(recipe))} -> t\.yaml", result.output, re.MULTILINE), result.output
    (line,) = error_lines(result.output)
    assert "answer.verifier: unknown verifier `numerik`" in line


def test_the_cli_hides_transformers_v6_renaming_warnings_only() -> None:
    """TRL's use of names transformers renames for v6 warns at every generation and buried the training log."""
    code = ("import warnings, urpo_kit.cli\n"
            "warnings.warn('`is_gradient_checkpointing` is deprecated and will be removed in v6.', FutureWarning)\n"
            "warnings.warn('something else changes', FutureWarning)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=offline_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "v6" not in proc.stderr and "something else changes" in proc.stderr


def test_subprocess_bad_file_has_no_traceback(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", edited('"{{ question }}"', '"{{ questoin }}"'))
    proc = subprocess.run([sys.executable, "-m", "urpo_kit", "validate", str(path)], env=offline_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = error_lines(proc.stderr)
    assert ERROR_LINE.match(line)["field"] == "player.prompt"


# ------------------------------------------------------------------------------------------------ allow-code
VERIFIER_MODULE = """\
def same(predicted, gold):
    return predicted.strip() == gold.strip()


def never(predicted, gold):
    return 0.0


def broken(predicted, gold):
    raise RuntimeError("boom")
"""


@pytest.fixture
def verifier_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "urpo_test_verifiers"
    write(tmp_path / "mods" / f"{name}.py", VERIFIER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_dotted_verifier_needs_allow_code(tmp_path: Path, verifier_module: str) -> None:
    path = write(tmp_path / "t.yaml", edited("verifier: numeric", f"verifier: {verifier_module}:same"))
    match = one_located_error(path, line=10, field="answer.verifier")
    assert "--allow-code" in match["message"]
    assert verifier_module not in sys.modules  # refused before importing (and so running) the module
    result = invoke("validate", str(path), "--allow-code")
    assert result.exit_code == 0, result.output
    assert re.search(r"^ok .*verifies", result.output, re.MULTILINE)


@pytest.mark.parametrize(("fn", "message"), [("never", "does not verify against itself"),
                                             ("broken", "RuntimeError: boom"),
                                             ("missing", "has no attribute")])
def test_dotted_verifier_failures_are_located(tmp_path: Path, verifier_module: str, fn: str, message: str) -> None:
    path = write(tmp_path / "t.yaml", edited("verifier: numeric", f"verifier: {verifier_module}:{fn}"))
    match = one_located_error(path, "--allow-code", line=10, field="answer.verifier")
    assert message in match["message"]


def test_dotted_verifier_in_a_fresh_process(tmp_path: Path) -> None:
    write(tmp_path / "mods" / "urpo_test_verifiers_sub.py", VERIFIER_MODULE)
    path = write(tmp_path / "t.yaml", edited("verifier: numeric", "verifier: urpo_test_verifiers_sub:same"))
    env = offline_env(PYTHONPATH=str(tmp_path / "mods"))
    command = [sys.executable, "-m", "urpo_kit", "validate", str(path)]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--allow-code" in refused.stderr and "Traceback" not in refused.stderr
    allowed = subprocess.run(command + ["--allow-code"], env=env, capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


# ------------------------------------------------------------------------------------------------ render
def flat(text: str) -> str:
    """Panel output without borders and wrapping, for substring checks."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_render_shows_prompts_and_gold() -> None:
    path = ROOT / "tasks" / "arithmetic.yaml"
    result = invoke("render", str(path), "--n", "3")
    assert result.exit_code == 0, result.output
    assert len(re.findall(r"arithmetic \(verifiable\) row \d+", result.output)) == 3
    shown = flat(result.output)
    prepared = prepare_task(path, limit=3)
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        ep = prepared.task.episode(row, row_number=number)
        for message in ep.messages:
            assert " ".join(message["content"].split()) in shown
        assert f"gold {ep.payload.gold}" in shown


def test_render_preference_shows_the_gold_as_labels() -> None:
    path = ROOT / "tasks" / "ranked-synthetic.yaml"
    result = invoke("render", str(path), "--n", "3", "--seed", "5")
    assert result.exit_code == 0, result.output
    prepared = prepare_task(path, limit=3)
    golds = re.findall(r"gold (Ranking: .+?)\s*│", result.output)
    expected = []
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        ep = prepared.task.episode(row, row_number=number, seed=5)
        expected.append("Ranking: " + " > ".join(f"[{ep.payload.labels[i]}]" for i in ep.payload.gold))
    assert golds == expected


def test_render_open_ended_and_overrides() -> None:
    """The player's prompt, and the self-referee's prompt over example answers ending in its prefill."""
    path, prompt = str(ROOT / "tasks" / "instructions-offline.yaml"), 'player.prompt="TASK: {{ instruction }}"'
    result = invoke("render", path, "--n", "2", "--set", prompt)
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    assert shown.count("player prompt") == 2 and shown.count("referee prompt") == 2 and "gold none" in shown
    assert shown.count("TASK: ") == 4   # the player's prompt, and the request inside the referee's
    assert "(answer 1)" in shown and "Ranking: [1] > [2] > [3] > [4] assistant Ranking: [" in shown
    player = flat(invoke("render", path, "--n", "2", "--set", prompt, "--role", "player").output)
    assert player.count("TASK: ") == 2 and "referee prompt" not in player


def test_render_of_a_bad_task_is_one_located_error(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", edited('"{{ question }}"', '"{{ questoin }}"'))
    result = invoke("render", str(path), "--n", "3")
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert ERROR_LINE.match(line)["file"] == str(path)
    markup = invoke("render", str(write(tmp_path / "m.yaml", GOOD + '"[/x]": 1\n')))
    assert markup.exit_code == 2 and "unknown key `[/x]`" in markup.output


# ------------------------------------------------------------------------------------------------ tasks
def test_tasks_lists_the_shipped_tasks() -> None:
    result = invoke("tasks", COLUMNS="80")  # also at a narrow width: names are not cut short
    assert result.exit_code == 0
    for path in TASKS:
        spec = load_task(path)
        assert re.search(rf"│ {re.escape(spec.name)}\s+│ {spec.kind}\s", result.output), (spec.name, result.output)


def test_tasks_marks_invalid_files_and_lists_generators(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", GOOD)
    write(tmp_path / "bad.yaml", edited("n: 5,", "n: five,"))
    result = invoke("tasks", "--folder", str(tmp_path))
    assert result.exit_code == 0 and "invalid" in result.output and "verifiable" in result.output
    generators = invoke("tasks", "--generators")
    for name in ("arithmetic", "preference_pairs", "preference_ranked", "instructions"):
        assert re.search(rf"^{name}\s+\S", generators.output, re.MULTILINE)


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "render", "tasks"):
        assert command in result.output


# ------------------------------------------------------------------------------------------------ train
def test_heldout_table_gives_intervals_and_the_paired_change(tmp_path: Path) -> None:
    """The end-of-training table: each accuracy with its interval, the change with the paired bootstrap interval
    over the rows of the first and last eval folders (only the plain difference without them)."""
    import json

    from rich.console import Console

    from urpo_kit.eval.stats import interval, paired_bootstrap
    from urpo_kit.train.callbacks import heldout_folder
    from urpo_kit.train.cli import heldout_table

    scores = {0: [float(i % 2) for i in range(64)]}
    scores[4] = [1.0 if i % 4 == 0 else s for i, s in enumerate(scores[0])]
    heldout = {}
    for step, values in scores.items():
        low, high = interval(values)
        heldout[step] = {"player/p/accuracy": sum(values) / 64, "player/p/accuracy_ci_low": low,
                         "player/p/accuracy_ci_high": high, "heldout/time_s": 1.0}
        details = [{"name": "p", "data_sha256": "d", "row_scores": {str(i): s for i, s in enumerate(values)}}]
        write(heldout_folder(tmp_path, step) / "results.json", json.dumps({"player": details}))

    def shown(run_dir: Path | None) -> str:
        console = Console(width=200, record=True)
        console.print(heldout_table(heldout, run_dir))
        return console.export_text()

    change = paired_bootstrap(*({str(i): s for i, s in enumerate(scores[step])} for step in (0, 4)))
    assert change is not None and change.lo > 0
    text = shown(tmp_path)
    assert re.search(r"player/p/accuracy\s+│\s+0\.500 \[0\.381, 0\.619\]\s+│\s+0\.750 \[0\.632, 0\.840\]\s+│\s+"
                     + re.escape(str(change)), text), text
    assert str(change) not in shown(None) and "+0.250" in shown(None)
    assert heldout_table({}, tmp_path) is None


# ------------------------------------------------------------------------------------------------ validate depth
def test_validate_reads_every_row_and_names_a_malformed_one(tmp_path: Path) -> None:
    """Row 30 of 40 is malformed: under max_error_fraction, so training skips it; validate says which row it was."""
    rows = [json.dumps({"question": f"{i} + 1?", "answer": f"#### {i + 1}"}) for i in range(40)]
    rows[29] = '{"question": "broken'
    write(tmp_path / "rows.jsonl", "\n".join(rows) + "\n")
    path = write(tmp_path / "t.yaml", edited("source: {generator: arithmetic, n: 5, seed: 0}",
                                             "source: {path: rows.jsonl}"))
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output
    assert re.search(r"^warning .*t\.yaml: 1 of 40 rows of .*rows\.jsonl are skipped \(2\.5%.*row 30: ", result.output,
                     re.MULTILINE), result.output
    assert "40 rows read" in result.output
    bounded = invoke("validate", str(path), "--rows", "10")
    assert bounded.exit_code == 0 and "warning" not in bounded.output and "(--rows 10)" in bounded.output


def test_validate_a_recipe_naming_a_missing_eval_suite(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "t.yaml", GOOD)
    recipe = write(tmp_path / "recipe.yaml", "tasks:\n  - {task: tasks/t.yaml}\n"
                   "eval:\n  every: 1\n  suites: [eval/nope.yaml]\n")
    one_located_error(recipe, line=5, field="eval.suites.0")
    assert "eval suite" in invoke("validate", str(recipe)).output


def test_validate_a_wrong_role_task_in_a_suite(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", GOOD)
    suite = write(tmp_path / "suite.yaml", "name: s\nreferee:\n  - task: t.yaml\n")
    match = one_located_error(suite, line=3, field="referee.0.task")
    assert "needs a preference task; t.yaml is verifiable" in match["message"]


def test_validate_a_model_name_and_a_prefill_the_template_does_not_ask_for(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "t.yaml", GOOD)
    recipe = write(tmp_path / "recipe.yaml", "model: {name: 'bundled:nope'}\ntasks:\n  - {task: tasks/t.yaml}\n")
    match = one_located_error(recipe, line=1, field="model.name")
    assert "unknown bundled model bundled:nope" in match["message"]
    shipped = (ROOT / "tasks" / "pairs-synthetic.yaml").read_text(encoding="utf-8")
    line = next(i for i, text in enumerate(shipped.splitlines(), start=1) if 'prefill: "Ranking: ["' in text)
    pairs = write(tmp_path / "p.yaml", shipped.replace('prefill: "Ranking: ["', 'prefill: "Verdict: ("'))
    match = one_located_error(pairs, line=line, field="referee.prefill")
    assert "does not appear in the rendered referee/rank.j2" in match["message"]


def test_train_with_a_misspelt_verifier_stops_at_the_task_line_before_any_model_loads(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "t.yaml", edited("verifier: numeric", "verifier: numerik"))
    recipe = write(tmp_path / "recipe.yaml", f"model: {{name: 'bundled:nope'}}\noutput_dir: {tmp_path / 'run'}\n"
                   "tasks:\n  - {task: tasks/t.yaml}\n")
    proc = subprocess.run([sys.executable, "-m", "urpo_kit", "train", str(recipe)], env=offline_env(),
                          capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Traceback" not in output, output
    (line,) = error_lines(output)
    match = ERROR_LINE.match(line)
    assert match and match["file"] == str(tmp_path / "tasks" / "t.yaml") and match["line"] == "10", line
    assert match["field"] == "answer.verifier" and "did you mean `numeric`" in match["message"]
    # the model name is unknown too: the task error came first, so nothing tried to load a model
    assert "bundled:nope" not in output and not (tmp_path / "run").exists()


def test_eval_and_train_refuse_a_wrong_role_task_before_any_model_loads(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", GOOD)
    suite = write(tmp_path / "suite.yaml", "name: s\nmodel: {name: 'bundled:nope'}\nreferee:\n  - task: t.yaml\n")
    result = invoke("eval", str(suite))
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert line.startswith(f"error {suite}:4:") and "referee.0.task: a `referee` benchmark needs a preference" in line
    assert "bundled:nope" not in result.output  # the model was never loaded
    recipe = write(tmp_path / "recipe.yaml", f"model: {{name: 'bundled:nope'}}\noutput_dir: {tmp_path / 'run'}\n"
                   f"tasks:\n  - {{task: t.yaml}}\neval: {{every: 1, suites: [suite.yaml]}}\n")
    result = invoke("train", str(recipe))
    assert result.exit_code == 2 and "referee.0.task" in result.output and "bundled:nope" not in result.output
