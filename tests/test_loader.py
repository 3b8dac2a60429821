"""The YAML loader: every problem is one located line (file:line:column: field: message), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urpo_kit.config import load_model, load_recipe, load_yaml, load_yaml_documents, origin_of
from urpo_kit.config.schema import Recipe, Sampling, SamplingParams
from urpo_kit.config.suite import load_suite
from urpo_kit.errors import ConfigError
from urpo_kit.kinds import VerifiableTask, load_task

TASK = """\
name: gsm8k
kind: verifiable
source: {path: data/x.jsonl}
fields: {question: question, solution: answer}
player:
  system: "Reason step by step, then give the final answer as \\\\boxed{...}."
  prompt: "{{ question }}"
answer:
  gold: "{{ solution.split('####')[-1] | trim }}"
  extract: boxed
  verifier: numeric
reward: {correct: 1.0, format: 0.1}
"""

RECIPE = """\
model: {name: bundled:smollm2-135m-instruct}
tasks:
  - {task: ../tasks/a.yaml, weight: 0.4}
  - {task: ../tasks/b.yaml, weight: 0.6}
grpo: {group_size: 4, steps: 30}
eval: {every: 10, suites: [suites/held.yaml]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(call, *args, **kwargs):
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return info.value.problems


# ----------------------------------------------------------------------------------------------- valid files
def test_valid_task_loads_and_records_origin(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks" / "gsm8k.yaml", TASK)
    task = load_task(path)
    assert isinstance(task, VerifiableTask)
    assert task.answer.verifier == "numeric"
    assert task.player.system.endswith("\\boxed{...}.")
    assert origin_of(task) == path.resolve()
    assert task.source.path == tmp_path / "tasks" / "data" / "x.jsonl"


def test_recipe_paths_resolve_against_the_recipe_folder(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path / "recipes" / "r.yaml", RECIPE))
    assert isinstance(recipe, Recipe)
    assert [ref.task for ref in recipe.tasks] == [tmp_path / "tasks" / "a.yaml", tmp_path / "tasks" / "b.yaml"]
    assert recipe.eval.suites == [tmp_path / "recipes" / "suites" / "held.yaml"]
    assert recipe.output_dir == Path("runs/default")  # a default nobody wrote stays as it is
    assert origin_of(recipe) == (tmp_path / "recipes" / "r.yaml").resolve()


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", TASK.replace("data/x.jsonl", "/srv/rows.jsonl"))
    assert load_task(path).source.path == Path("/srv/rows.jsonl")


def test_template_resolved_only_when_it_exists_next_to_the_yaml(tmp_path: Path) -> None:
    write(tmp_path / "mine.j2", "{{ question }}")
    text = TASK.replace('  prompt: "{{ question }}"', "  template: mine.j2")
    assert load_task(write(tmp_path / "t.yaml", text)).player.template == tmp_path / "mine.j2"
    text = TASK.replace('  prompt: "{{ question }}"', "  template: player/cot.j2")
    assert load_task(write(tmp_path / "t.yaml", text)).player.template == Path("player/cot.j2")


def test_load_model_generic(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", RECIPE)
    assert load_model(Recipe, path, ["seed=7"]).seed == 7


# ----------------------------------------------------------------------------------------------- validation
def test_misspelt_key_suggests_the_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", TASK.replace("verifier: numeric", "verifer: numeric"))
    [problem] = problems_of(load_task, path)
    assert (problem.line, problem.column, problem.field) == (11, 3, "answer.verifer")
    assert problem.message == "unknown key `verifer`; did you mean `verifier`?"
    assert str(problem) == f"{path}:11:3: answer.verifer: unknown key `verifer`; did you mean `verifier`?"


def test_wrong_type_points_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", RECIPE.replace("steps: 30", "steps: many"))
    [problem] = problems_of(load_recipe, path)
    assert (problem.line, problem.column, problem.field) == (5, 30, "grpo.steps")
    assert "valid integer" in problem.message and "'many'" in problem.message


def test_list_item_error_names_the_index(tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", RECIPE.replace("weight: 0.6", "weight: -1"))
    [problem] = problems_of(load_recipe, path)
    assert (problem.line, problem.field) == (4, "tasks.1.weight")


def test_missing_field_points_at_the_parent(tmp_path: Path) -> None:
    text = TASK.replace("  gold: \"{{ solution.split('####')[-1] | trim }}\"\n", "")
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", text))
    assert (problem.line, problem.field, problem.message) == (8, "answer.gold", "required key is missing")


def test_missing_top_level_field(tmp_path: Path) -> None:
    text = TASK.split("answer:")[0] + "reward: {correct: 1.0}\n"
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", text))
    assert (problem.line, problem.field) == (1, "answer")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    text = TASK.replace("verifier: numeric", "verifer: numeric").replace("correct: 1.0", "correct: lots")
    problems = problems_of(load_task, write(tmp_path / "t.yaml", text))
    assert [(p.line, p.field) for p in problems] == [(11, "answer.verifer"), (12, "reward.correct")]


def test_wrong_kind_lists_the_valid_kinds(tmp_path: Path) -> None:
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", TASK.replace("kind: verifiable", "kind: verifyable")))
    assert (problem.line, problem.column, problem.field) == (2, 7, "kind")
    assert "unknown kind `verifyable`; did you mean `verifiable`?" in problem.message
    assert "verifiable, preference, open_ended" in problem.message


def test_missing_kind(tmp_path: Path) -> None:
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", TASK.replace("kind: verifiable\n", "")))
    assert (problem.line, problem.field) == (1, "kind")
    assert problem.message.startswith("missing `kind`") and "open_ended" in problem.message


def test_model_validator_error_is_located(tmp_path: Path) -> None:
    text = TASK.replace("source: {path: data/x.jsonl}", "source: {path: data/x.jsonl, hf: a/b}")
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", text))
    assert (problem.line, problem.field) == (3, "source")
    assert problem.message.startswith("give exactly one of")


# ----------------------------------------------------------------------------------------------- YAML level
def test_duplicate_key(tmp_path: Path) -> None:
    text = TASK.replace("  extract: boxed\n", "  extract: boxed\n  gold: again\n")
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", text))
    assert (problem.line, problem.column, problem.field) == (11, 3, "answer.gold")
    assert problem.message == "duplicate key `gold` (first at line 9)"


def test_syntax_error_is_located(tmp_path: Path) -> None:
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", TASK.replace("extract: boxed", "extract: [boxed")))
    assert problem.line is not None and problem.message.startswith("YAML syntax error")


def test_multi_document_file_needs_asking(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", TASK + "---\n" + TASK.replace("gsm8k", "other"))
    [problem] = problems_of(load_task, path)
    assert problem.line == 14 and "2 YAML documents" in problem.message
    assert [data["name"] for data, _ in load_yaml_documents(path)] == ["gsm8k", "other"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "file is empty"),
        (b"- a\n- b\n", "top level must be a mapping"),
        (b"just text\n", "top level must be a mapping"),
        (b"name: caf\xe9\n", "not UTF-8"),
        (b"a: !!python/object:os.system x\n", "could not determine a constructor"),
        (b"a: &x [*x]\n", "recursive alias"),
    ],
)
def test_unusable_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(content)
    [problem] = problems_of(load_task, path)
    assert expected in problem.message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert problems_of(load_task, tmp_path / "nope.yaml")[0].message == "file not found"
    assert "folder" in problems_of(load_task, tmp_path)[0].message


# ----------------------------------------------------------------------------------------------- include
def test_include_merges_underneath_with_positions_in_the_included_file(tmp_path: Path) -> None:
    write(tmp_path / "common" / "base.yaml", "source:\n  path: rows.jsonl\n  shuffle: true\nreward: {correct: 2.0, format: 0.5}\n")
    local = TASK.replace("source: {path: data/x.jsonl}\n", "").replace("reward: {correct: 1.0, format: 0.1}", "reward: {format: 0.2}")
    path = write(tmp_path / "t.yaml", "include: common/base.yaml\n" + local)
    data, positions = load_yaml(path)
    assert "include" not in data
    assert data["reward"] == {"correct": 2.0, "format": 0.2}
    assert positions.key(("reward", "correct"))[:2] == (tmp_path / "common" / "base.yaml", 4)
    assert positions.key(("reward", "format"))[:2] == (path, 12)
    task = load_task(path)
    assert task.source.shuffle and task.reward.correct == 2.0 and task.reward.format == 0.2
    assert task.source.path == tmp_path / "common" / "rows.jsonl"  # written in the included file


def test_include_error_points_into_the_included_file(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "reward: {corect: 1.0}\n")
    [problem] = problems_of(load_task, write(tmp_path / "t.yaml", "include: [base.yaml]\n" + TASK.replace("reward: {correct: 1.0, format: 0.1}\n", "")))
    assert (problem.file, problem.line, problem.field) == (base, 1, "reward.corect")
    assert "did you mean `correct`" in problem.message


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "include: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "include: [sub/../a.yaml]\n")
    [problem] = problems_of(load_yaml, tmp_path / "a.yaml")
    assert "include cycle" in problem.message
    assert problem.message.endswith("a.yaml -> " + str(tmp_path / "b.yaml") + " -> " + str(tmp_path / "a.yaml"))


def test_missing_include(tmp_path: Path) -> None:
    """Named where the include is written (the including file, its line, the `include` field): the line to fix."""
    [problem] = problems_of(load_yaml, write(tmp_path / "t.yaml", "name: a\ninclude: nope.yaml\n"))
    assert (problem.file, problem.line, problem.field) == (tmp_path / "t.yaml", 2, "include")
    assert problem.message == f"included file `{tmp_path / 'nope.yaml'}` not found"


# ----------------------------------------------------------------------------------------------- overrides
def test_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "recipes" / "r.yaml", RECIPE)
    recipe = load_recipe(path, ["grpo.steps=3", "tasks.0.weight=2", "model.lora={r: 4}", "eval.every=0"])
    assert (recipe.grpo.steps, recipe.tasks[0].weight, recipe.model.lora.r, recipe.eval.every) == (3, 2.0, 4, 0)
    assert load_recipe(path, ["model.lora={r: 4}", "model.lora=null"]).model.lora is None


def test_override_replaces_a_subtree_and_resolves_against_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "tasks" / "t.yaml", TASK.replace("data/x.jsonl", "data/x.jsonl, shuffle: true"))
    task = load_task(path, ["source={path: elsewhere.jsonl}", "answer.verifier=exact"])
    assert task.source.path == tmp_path / "elsewhere.jsonl" and not task.source.shuffle
    assert task.answer.verifier == "exact"


def test_mapping_overrides(tmp_path: Path) -> None:
    task = load_task(write(tmp_path / "t.yaml", TASK), {"answer.verifier": "exact", "reward": {"correct": 2}})
    assert (task.answer.verifier, task.reward.correct, task.reward.format) == ("exact", 2.0, 0.0)


def test_validation_error_names_the_override(tmp_path: Path) -> None:
    [problem] = problems_of(load_recipe, write(tmp_path / "r.yaml", RECIPE), ["grpo.steps=many"])
    assert str(problem).startswith("<override 'grpo.steps=many'>: grpo.steps: input should be a valid integer")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("grpo.steps", "expected `key.path=value`"),
        ("grpo.steps=[1", "YAML syntax error"),
        ("=3", "empty key"),
        ("tasks.7.weight=1", "index 7 is out of range"),
        ("tasks.first.weight=1", "not a list index"),
        ("grpo.steps.x=1", "holds a single value"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: str) -> None:
    [problem] = problems_of(load_recipe, write(tmp_path / "r.yaml", RECIPE), [override])
    assert problem.file == f"<override {override!r}>" and problem.line is None
    assert expected in problem.message


# ----------------------------------------------------------------------------------------------- robustness
def _mutate(lines: list[str], draw) -> list[str]:
    """One random edit of the kind people make by hand: lost, doubled or swapped lines, stray characters, new values."""
    lines = list(lines)
    i = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert", "value"]))
    junk = st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>#%@`\"',? \t\n\\") + ["é", "\x00", "\ufeff", "0", "a"]) | st.characters(codec="utf-8"), max_size=6)
    if op == "delete" and len(lines) > 1:
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "swap":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == "insert":
        at = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + draw(junk) + lines[i][at:]
    elif ":" in lines[i]:
        value = draw(st.sampled_from(["", "null", "-1", "[]", "{}", "many", "1e999", "2020-13-45", "*x", "&x a", "!!binary x"]) | junk)
        lines[i] = lines[i].split(":", 1)[0] + ": " + value
    return lines


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_task_never_crashes(tmp_path: Path, data) -> None:
    lines = TASK.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        lines = _mutate(lines, data.draw)
    path = tmp_path / "t.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        assert isinstance(load_task(path), VerifiableTask)
    except ConfigError as err:
        assert err.problems
        assert not any("internal error" in p.message for p in err.problems), str(err)


def test_sampling_merges_in_one_place_over_each_role_default(tmp_path: Path) -> None:
    """A suite that sets only the player's length stays greedy (the role's default), and a benchmark's own setting
    wins over both; a recipe's referee role keeps its default temperature under a partial setting."""
    (tmp_path / "s.yaml").write_text("name: s\nsampling: {player: {max_new_tokens: 512}}\n"
                                     "player: [{lm_eval: gsm8k}]\n", encoding="utf-8")
    suite = load_suite(tmp_path / "s.yaml")
    assert suite.sampling.params("player") == SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=512)
    assert suite.sampling.params("player", Sampling(temperature=0.5)).temperature == 0.5
    recipe = Recipe.model_validate({"tasks": [{"task": "t.yaml"}], "roles": {"referee": {"max_new_tokens": 16}}})
    assert recipe.roles.params("referee") == SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=16)
    assert recipe.roles.params("player") == SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=128)
