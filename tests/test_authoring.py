"""Authoring without reading the source (issue 11, items 1-6): generated JSON Schemas and reference, `--set` on every
command that reads YAML, how override and file paths resolve, extraction chains, and messages that point at the fix."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from urpo_kit import docs
from urpo_kit.cli import app
from urpo_kit.compiler import prepare_task
from urpo_kit.config import files
from urpo_kit.config.loader import load_recipe
from urpo_kit.config.refs import written_overrides
from urpo_kit.config.schema import Recipe
from urpo_kit.config.suite import EvalSuite
from urpo_kit.errors import ConfigError
from urpo_kit.kinds import KINDS, PreferenceTask, VerifiableTask, load_task
from urpo_kit.kinds.verifiable import gold_as_completion
from urpo_kit.referee.modes import MODES
from urpo_kit.rewards import EXTRACT_METHODS, SCORE_METHODS, VERIFIERS, extract_answer, extractor
from urpo_kit.sources import GENERATORS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_HEADER = re.compile(r"# yaml-language-server: \$schema=(?P<path>\S+)\n")
CSV_TASK = """\
name: mc
kind: verifiable
source: {path: mc.csv}
player:
  prompt: "{{ question }}\\nA) {{ a }}\\nB) {{ b }}"
answer:
  gold: "{{ label }}"
  extract: full
  verifier: choice
"""


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def errors(output: str) -> list[str]:
    return [line.removeprefix("error ") for line in output.splitlines() if line.startswith("error")]


def csv_task(folder: Path, text: str = CSV_TASK) -> Path:
    write(folder / "mc.csv", "question,a,b,label\nWhich is larger?,2,3,B\nWhich is even?,4,5,A\n")
    return write(folder / "mc.yaml", text)


# ------------------------------------------------------------------------------------------------ 1. schemas
def test_shipped_docs_are_fresh() -> None:
    """docs/schema/*.schema.json and docs/reference.md are what the models and registries generate now."""
    assert docs.stale() == [], f"stale generated docs: regenerate with `{docs.REGENERATE}` (make docs)"


def test_schema_command_prints_each_kind_and_writes_the_docs(tmp_path: Path) -> None:
    for kind in ("task", "recipe", "suite"):
        result = invoke("schema", kind)
        assert result.exit_code == 0 and json.loads(result.output) == docs.json_schema(kind)
    assert invoke("schema", "tsk").exit_code == 2
    written = invoke("schema", "--write", str(tmp_path))
    assert written.exit_code == 0 and docs.stale(tmp_path) == []
    assert (tmp_path / "schema" / "task.schema.json").read_text() == docs.schema_text("task")


def test_task_schema_is_the_union_of_kinds_with_descriptions_enums_and_defaults() -> None:
    schema = docs.json_schema("task")
    core = schema["else"]
    assert set(core["discriminator"]["mapping"]) == set(KINDS)
    defs = schema["$defs"]
    referee = defs["RefereeSpec"]["properties"]
    assert referee["mode"]["enum"] == ["listwise", "pairwise", "pointwise"] and referee["mode"]["default"] == "listwise"
    assert "likelihood" in referee["verdict"]["description"] and referee["samples"]["minimum"] == 1
    assert defs["Answer"]["properties"]["extract"]["anyOf"][1]["type"] == "array"   # a chain of extractors
    text = json.dumps(schema)
    for ref in set(re.findall(r'"\$ref": "#/\$defs/([^"]+)"', text)):
        assert ref in defs
    assert schema["then"]["properties"]["include"]   # a file with `include:` may take its kind from the include


def test_every_shipped_yaml_names_its_schema() -> None:
    kinds = {"tasks": "task", "recipes": "recipe", "recipes/eval": "suite"}
    for folder, kind in kinds.items():
        for path in sorted((ROOT / folder).glob("*.yaml")):
            match = SCHEMA_HEADER.match(path.read_text(encoding="utf-8"))
            assert match, f"{path} does not start with the yaml-language-server $schema comment"
            target = (path.parent / match["path"]).resolve()
            assert target == ROOT / "docs" / "schema" / docs.schema_file(kind), path


def test_every_field_has_a_meaning() -> None:
    """The reference's meaning column comes from the field descriptions: none may be empty."""
    missing = []
    for root in [spec for spec, _ in KINDS.values()] + [Recipe, EvalSuite]:
        for model in [root, *docs._parts([root], set())]:
            missing += [f"{model.__name__}.{n}" for n, info in model.model_fields.items() if not info.description]
    assert missing == []


def test_descriptions_that_name_registry_entries_name_all_of_them() -> None:
    """The schema (config) sits below the registries (rewards), so these descriptions are written out: kept whole."""
    answer = VerifiableTask.model_fields["answer"].annotation.model_fields
    assert all(method in answer["extract"].description for method in EXTRACT_METHODS)
    assert all(name in answer["verifier"].description for name in VERIFIERS)
    assert typing.get_args(PreferenceTask.model_fields["score"].annotation) == tuple(SCORE_METHODS)


# ------------------------------------------------------------------------------------------------ 2. reference
def test_reference_covers_every_registry() -> None:
    text = docs.reference()
    for name in [*VERIFIERS, *SCORE_METHODS, *GENERATORS, *EXTRACT_METHODS]:
        assert f"| `{name}` |" in text, name
    assert "`rel_tol: float = 1e-06`" in text                      # verifier_args from the signature
    assert "`max_value: int = 100`" in text                         # generator params from the signature
    assert "First capture group of the last match" in text          # which group `regex:` keeps
    for field in ("position_balance", "self_referee", "train_judgments", "max_error_fraction", "difficulty"):
        assert f"| `{field}` |" in text, field
    assert "docs/reference.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("template", "mode"), [("referee/rank.j2", "listwise"), ("referee/pair.j2", "pairwise"),
                                                ("referee/score.j2", "pointwise")])
def test_each_shipped_referee_template_has_an_answer_line_its_prefill_starts(template: str, mode: str) -> None:
    line = docs.answer_line(template, mode)
    assert line.startswith(MODES[mode].prefill) and f"`{line}`" in docs.reference()


# ------------------------------------------------------------------------------------------------ 3. --set
def test_set_on_tasks_train_and_eval(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "name: t\nkind: verifiable\nsource: {generator: arithmetic, n: 5}\n"
                               "player: {prompt: '{{ question }}'}\nanswer: {gold: '{{ value }}', verifier: numeric}\n")
    listed = invoke("tasks", "--folder", str(tmp_path), "--set", "source.n=3")
    assert listed.exit_code == 0 and "n=3" in listed.output
    recipe = write(tmp_path / "r.yaml", "tasks: [{task: t.yaml}]\n")
    for args in (["--set", "grpo.steps=0"], ["grpo.steps=0"]):   # the flag, and the positional shorthand
        result = invoke("train", str(recipe), *args)
        assert result.exit_code == 2
        assert errors(result.output) == ["<override 'grpo.steps=0'>: grpo.steps: input should be greater than or "
                                         "equal to 1 (got 0)"]
    suite = write(tmp_path / "s.yaml", "name: s\nplayer: [{task: t.yaml}]\n")
    result = invoke("eval", str(suite), "--set", "limit=0")
    assert result.exit_code == 2 and errors(result.output)[0].startswith("<override 'limit=0'>: limit:")
    assert invoke("eval", "--compare", "a", "b", "--set", "limit=1").exit_code == 2


def test_override_paths_resolve_against_the_working_folder_file_paths_against_their_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule docs/reference.md states (#paths): a path written in a file is relative to that file's folder, also
    in an included file; a path given with --set is relative to where the command runs."""
    task = csv_task(tmp_path / "tasks")
    assert load_task(task).source.path == tmp_path / "tasks" / "mc.csv"
    write(tmp_path / "base" / "shared.yaml", "source: {path: data.csv}\n")
    child = write(tmp_path / "tasks" / "child.yaml", CSV_TASK.replace("source: {path: mc.csv}\n",
                                                                      "include: ../base/shared.yaml\n"))
    with files.allowed_paths([tmp_path / "base"]):  # an include outside the task's folder needs --allow-path
        assert load_task(child).source.path == tmp_path / "base" / "data.csv"
    monkeypatch.chdir(tmp_path)
    assert load_task(task, ["source.path=mine.csv"]).source.path == tmp_path / "mine.csv"
    assert load_task(task, ["source={path: sub/mine.csv}"]).source.path == tmp_path / "sub" / "mine.csv"
    # a recipe's `overrides:` for a task are written in the recipe: their paths are beside the recipe
    recipe_path = write(tmp_path / "recipes" / "r.yaml",
                        "tasks:\n  - task: ../tasks/mc.yaml\n    overrides: {source.path: held.csv}\n")
    ref = load_recipe(recipe_path).tasks[0]
    assert load_task(ref.task, written_overrides(ref)).source.path == tmp_path / "recipes" / "held.csv"
    ref = load_recipe(recipe_path, ["tasks.0.overrides={source.path: held.csv}"]).tasks[0]   # typed here: cwd
    assert load_task(ref.task, written_overrides(ref)).source.path == tmp_path / "held.csv"
    assert "working folder" in docs.PATHS and "against\n  the folder of the file it is written in" in docs.PATHS


# ------------------------------------------------------------------------------------------------ 4. render
def test_render_role_that_a_task_does_not_have_is_an_error() -> None:
    result = invoke("render", str(ROOT / "tasks" / "arithmetic.yaml"), "--n", "1", "--role", "referee")
    assert result.exit_code == 2 and "no referee prompt (it has: player)" in result.output
    pairs = invoke("render", str(ROOT / "tasks" / "pairs-synthetic.yaml"), "--n", "1", "--role", "referee")
    assert pairs.exit_code == 0 and "referee prompt" in pairs.output and "gold Ranking: [" in pairs.output


# ------------------------------------------------------------------------------------------------ 5. extraction
def test_extraction_chains_try_each_method_in_turn() -> None:
    chain = extractor(["boxed", "last_number"])
    assert chain(r"so \boxed{12} (not 13)") == "12"
    assert chain("it is 41, no, 42") == "42"
    assert chain("no answer") is None
    assert extract_answer("<a>x</a> 7", ["tag:b", "tag:a"]) == "x"
    with pytest.raises(ValueError, match="unknown extract method `boxd`"):
        extractor(["boxed", "boxd"])
    with pytest.raises(ValueError, match="at least one"):
        extractor([])
    assert gold_as_completion(["boxed", "last_number"], "5") == r"The answer is \boxed{5}."


def test_a_task_with_an_extraction_chain_validates(tmp_path: Path) -> None:
    path = csv_task(tmp_path, CSV_TASK.replace("extract: full", "extract: [tag:answer, full]"))
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output


def test_choice_gold_the_extractor_misses_suggests_full(tmp_path: Path) -> None:
    path = csv_task(tmp_path, CSV_TASK.replace("extract: full", "extract: last_number"))
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    (line,) = errors(result.output)
    assert line.startswith(f"{path}:8:12: answer.extract: ") and "use `extract: full`" in line


# ------------------------------------------------------------------------------------------------ 6. messages
def test_a_recipe_naming_a_missing_task_is_located_in_the_recipe(tmp_path: Path) -> None:
    recipe = write(tmp_path / "r.yaml", "tasks:\n  - {task: tasks/a.yaml}\n  - {task: tasks/nope.yaml}\n")
    csv_task(tmp_path / "tasks").rename(tmp_path / "tasks" / "a.yaml")
    for command in ("validate", "train"):
        result = invoke(command, str(recipe))
        assert result.exit_code == 2
        (line,) = errors(result.output)
        assert line == f"{recipe}:3:12: tasks.1.task: task file `{tmp_path / 'tasks' / 'nope.yaml'}` does not exist"
    suite = write(tmp_path / "s.yaml", "name: s\nplayer:\n  - task: nope.yaml\n")
    for command in ("validate", "eval"):   # eval: before any model loads
        (line,) = errors(invoke(command, str(suite)).output)
        assert line.startswith(f"{suite}:3:11: player.0.task: task file ")


def test_a_bad_override_in_a_recipe_is_located_in_the_recipe(tmp_path: Path) -> None:
    csv_task(tmp_path / "tasks")
    recipe = write(tmp_path / "r.yaml", "tasks:\n  - task: tasks/mc.yaml\n    overrides:\n"
                                        "      answer.verifier: choise\n")
    (line,) = errors(invoke("validate", str(recipe)).output)
    assert line.startswith(f"{recipe}:4:7: answer.verifier: unknown verifier `choise`") and "`choice`" in line


def test_a_missing_include_is_located_where_it_is_included(tmp_path: Path) -> None:
    path = csv_task(tmp_path, CSV_TASK + "include: [base.yaml]\n")
    (line,) = errors(invoke("validate", str(path)).output)
    assert line == f"{path}:10:11: include: included file `{tmp_path / 'base.yaml'}` not found"


def test_an_undefined_variable_lists_the_row_variables_with_a_suggestion(tmp_path: Path) -> None:
    path = csv_task(tmp_path, CSV_TASK.replace("{{ question }}", "{{ questoin }}"))
    (line,) = errors(invoke("validate", str(path)).output)
    assert line.startswith(f"{path}:5:11: player.prompt: undefined template variable: 'questoin' is undefined; ")
    assert "available variables: question, a, b, label; did you mean `question`?" in line


def test_a_malformed_source_file_names_the_task_file_and_its_source_line(tmp_path: Path) -> None:
    path = csv_task(tmp_path)
    write(tmp_path / "mc.csv", "question,a,b,label\nx,1,2,A\ny,1\nz,1,2,3,4\n")
    (line,) = errors(invoke("validate", str(path)).output)
    assert line.startswith(f"{path}:3:16: source.path: ") and "2 of 3 rows are malformed" in line
    assert "row 3: expected 4 columns, got 2" in line
    missing = invoke("render", str(csv_task(tmp_path, CSV_TASK.replace("mc.csv", "none.csv"))))
    assert errors(missing.output) == [f"{path}:3:16: source.path: {tmp_path / 'none.csv'}: file not found"]
    with pytest.raises(ConfigError, match="source.path"):   # the same located error for training and evaluation
        prepare_task(path)
