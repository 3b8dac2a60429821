"""urpo_kit.recast: sandboxed, strict Jinja2 rendering of player and referee prompts into Episodes."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from urpo_kit.config import locate
from urpo_kit.config.schema import RefereeSpec
from urpo_kit.errors import FieldError
from urpo_kit.kinds import TaskFile, build, episode_from_record, load_task
from urpo_kit.recast import BUILTIN_TEMPLATES, Templates, stable_seed
from urpo_kit.referee.view import RefereeRenderer, RefereeView, make_labels

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
ROW = {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}


def task(data: dict[str, Any]):
    """A TaskSpec built in code (no YAML), validated exactly as the loader would."""
    return TaskFile.model_validate({"task": data}).task


def verifiable(**over: Any) -> dict[str, Any]:
    data = {
        "name": "t",
        "kind": "verifiable",
        "source": {"path": "rows.jsonl"},
        "fields": {"solution": "answer"},
        "player": {"system": "Box the answer.", "prompt": "{{ question }}"},
        "answer": {"gold": "{{ solution.split('####')[-1] | trim }}", "extract": "boxed", "verifier": "numeric"},
    }
    data.update(over)
    return data


def preference(**over: Any) -> dict[str, Any]:
    data = {
        "name": "p",
        "kind": "preference",
        "source": {"path": "rows.jsonl"},
        "prompt": "{{ prompt }}",
        "candidates": "ranked",
        "referee": {"shuffle": True, "labels": "numbers"},
        "max_candidates": 8,
    }
    data.update(over)
    return data


def render_error(fn, *args, **kwargs) -> FieldError:
    with pytest.raises(FieldError) as info:
        fn(*args, **kwargs)
    return info.value


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ player
def test_verifiable_episode_messages_and_gold() -> None:
    ep = build(task(verifiable()), None).episode(ROW, row_number=7)
    assert ep.kind == "verifiable" and ep.task == "t"
    assert ep.messages == [
        {"role": "system", "content": "Box the answer."},
        {"role": "user", "content": "What is 2 + 3?"},
    ]
    assert ep.payload.gold == "5"
    assert ep.row == 7


def test_no_system_message_when_none_is_given() -> None:
    data = verifiable(player={"prompt": "{{ question }}"})
    ep = build(task(data), None).episode(ROW)
    assert [m["role"] for m in ep.messages] == ["user"]


def test_open_ended_episode_has_no_gold_and_keeps_the_instruction() -> None:
    spec = task({"name": "o", "kind": "open_ended", "source": {"path": "x.jsonl"},
                 "player": {"prompt": "{{ instruction }}{% if input %}\n\n{{ input }}{% endif %}"}})
    ep = build(spec, None).episode({"instruction": "Rewrite it.", "input": "The cat sat."})
    assert not hasattr(ep.payload, "gold")
    assert ep.payload.instruction == "Rewrite it.\n\nThe cat sat."
    assert ep.messages[-1]["content"] == ep.payload.instruction


# ------------------------------------------------------------------------------------------------ sandbox
@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ question.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ROW.items.__self__ }}",
    ],
)
def test_sandbox_refuses_attribute_escapes(template: str) -> None:
    renderer = build(task(verifiable(player={"prompt": template})), None)
    err = render_error(renderer.episode, {**ROW, "ROW": {"a": 1}})
    assert err.field == "player.prompt"
    assert "unsafe" in err.message or "undefined" in err.message


def test_sandbox_refuses_mutating_row_values() -> None:
    """The immutable sandbox: a template cannot change the row it reads (rows are shared between renders)."""
    row = {**ROW, "items": [1, 2]}
    renderer = build(task(verifiable(player={"prompt": "{{ items.append(3) }}{{ items }}"})), None)
    err = render_error(renderer.episode, row)
    assert err.field == "player.prompt" and "unsafe" in err.message
    assert row["items"] == [1, 2]


def test_sandbox_also_guards_field_expressions() -> None:
    renderer = build(task(verifiable(fields={"solution": "answer.__class__"})), None)
    err = render_error(renderer.episode, ROW, row_number=3)
    assert err.field == "fields.solution"
    assert "unsafe" in err.message and err.row_number == 3


# ------------------------------------------------------------------------------------------------ strict undefined
def test_missing_variable_names_the_field_and_the_variable() -> None:
    renderer = build(task(verifiable(player={"prompt": "Q: {{ questoin }}"})), None)
    err = render_error(renderer.episode, ROW, row_number=12)
    assert err.field == "player.prompt"
    assert "questoin" in err.message and "undefined" in err.message
    assert str(err).startswith("player.prompt: ") and "(row 12)" in str(err)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"player": {"system": "{{ persona }}", "prompt": "{{ question }}"}}, "player.system"),
        ({"answer": {"gold": "{{ final }}"}}, "answer.gold"),
        ({"fields": {"solution": "solutoin"}}, "fields.solution"),  # a bare misspelt column
        ({"fields": {"solution": "[answer, missing]"}}, "fields.solution"),  # undefined inside a list
        ({"fields": {"solution": "{'a': missing}"}}, "fields.solution"),  # undefined inside a mapping
    ],
)
def test_undefined_is_an_error_in_every_field(over: dict, field: str) -> None:
    """Also for `fields` expressions: an undefined value fails there, not later in whichever template uses it."""
    renderer = build(task(verifiable(**over)), None)
    err = render_error(renderer.episode, ROW)
    assert err.field == field
    assert "undefined" in err.message


def test_missing_attribute_of_a_row_value_is_an_error() -> None:
    renderer = build(task(verifiable(player={"prompt": "{{ meta.level }}"})), None)
    err = render_error(renderer.episode, {**ROW, "meta": {"lvl": 1}})
    assert err.field == "player.prompt" and "level" in err.message


def test_runtime_errors_become_render_errors() -> None:
    renderer = build(task(verifiable(answer={"gold": "{{ solution.split('####')[3] }}"})), None)
    err = render_error(renderer.episode, ROW)
    assert err.field == "answer.gold"


def test_syntax_error_is_found_when_the_task_is_compiled() -> None:
    err = render_error(build, task(verifiable(player={"prompt": "{{ question "})), None)
    assert err.field == "player.prompt" and "syntax" in err.message


def test_empty_gold_is_a_render_error() -> None:
    renderer = build(task(verifiable()), None)
    err = render_error(renderer.episode, {"question": "q", "answer": "no final answer ####  "}, row_number=4)
    assert err.field == "answer.gold" and "empty" in err.message and err.row_number == 4


def test_a_column_called_self_does_not_break_rendering() -> None:
    """Variables are passed as one mapping, so a column name cannot clash with a Python parameter (`self`)."""
    renderer = build(task(verifiable()), None)
    ep = renderer.episode({**ROW, "self": "x"})
    assert ep.messages[-1]["content"] == "What is 2 + 3?" and ep.payload.gold == "5"


# ------------------------------------------------------------------------------------------------ fields
def test_fields_rename_and_keep_raw_columns() -> None:
    renderer = build(task(verifiable(player={"prompt": "{{ q }} | {{ question }}"},
                                            fields={"q": "question", "solution": "answer"})), None)
    variables = renderer.variables(ROW)
    assert variables["q"] == ROW["question"] and variables["question"] == ROW["question"]
    assert renderer.episode(ROW).messages[-1]["content"] == "What is 2 + 3? | What is 2 + 3?"


def test_fields_list_expression_builds_the_ranked_candidates() -> None:
    spec = task(preference(fields={"ranked": "[chosen, rejected]"}))
    renderer = build(spec, None)
    row = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "Bye."}
    assert renderer.variables(row)["ranked"] == ["Hi!", "Bye."]
    ep = renderer.episode(row, seed=0, position=0)
    assert len(ep.payload.labels) == 2
    assert RefereeView(ep.messages, ep.payload.labels, ep.payload.order).to_original(ep.payload.gold) == [0, 1]


def test_skywork_message_list_fields() -> None:
    """The shipped Skywork task's expressions: the conversation before the last turn is the prompt."""
    spec = load_task(Path(__file__).resolve().parents[1] / "tasks" / "skywork-preference.yaml")
    row = json.loads((FIXTURES / "skywork_preference.jsonl").read_text().splitlines()[0])
    renderer = build(spec, None)
    variables = renderer.variables(row)
    assert variables["prompt"] == row["chosen"][0]["content"]
    assert variables["ranked"] == [row["chosen"][-1]["content"], row["rejected"][-1]["content"]]
    multi = {
        "chosen": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                   {"role": "user", "content": "C"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                     {"role": "user", "content": "C"}, {"role": "assistant", "content": "bad"}],
    }
    assert renderer.variables(multi)["prompt"] == "A\n\nB\n\nC"
    ep = renderer.episode(multi, seed=1, position=5)
    assert "A\n\nB\n\nC" in ep.messages[-1]["content"]


# ------------------------------------------------------------------------------------------------ template files
def test_builtin_player_template_file() -> None:
    renderer = build(task(verifiable(player={"template": "player/reason-boxed.j2"})), None)
    content = renderer.episode(ROW).messages[-1]["content"]
    assert content.startswith("What is 2 + 3?")
    assert (BUILTIN_TEMPLATES / "player" / "reason-boxed.j2").read_text().splitlines()[-1] in content


def test_yaml_folder_template_wins_over_the_builtin(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "referee" / "rank.j2", "MINE {{ n }}: {% for c in candidates %}[{{ c.label }}] {{ c.text }} {% endfor %}")
    renderer = build(task(preference()), tmp_path / "tasks")
    ep = renderer.episode({"prompt": "q", "ranked": ["a", "b", "c"]})
    assert ep.messages[-1]["content"].startswith("MINE 3: ")
    # without the local file, the built-in is used
    builtin = build(task(preference()), tmp_path / "elsewhere").episode({"prompt": "q", "ranked": ["a", "b"]})
    assert builtin.messages[-1]["content"].startswith("You are a strict, fair judge.")


def test_templates_folder_beside_the_yaml_is_searched(tmp_path: Path) -> None:
    write(tmp_path / "templates" / "player" / "mine.j2", "T: {{ question }}")
    spec = task(verifiable(player={"template": "player/mine.j2"}))
    assert build(spec, tmp_path / "tasks").episode(ROW).messages[-1]["content"] == "T: What is 2 + 3?"
    assert Templates(tmp_path / "tasks").search_dirs[-1] == BUILTIN_TEMPLATES


def test_template_search_order_is_yaml_folder_first(tmp_path: Path) -> None:
    write(tmp_path / "tasks" / "player" / "x.j2", "yaml folder")
    write(tmp_path / "tasks" / "templates" / "player" / "x.j2", "templates beside")
    found = Templates(tmp_path / "tasks").find(Path("player/x.j2"), "player.template")
    assert found.read_text() == "yaml folder"


def test_missing_template_file_lists_where_it_looked(tmp_path: Path) -> None:
    spec = task(verifiable(player={"template": "player/nope.j2"}))
    err = render_error(build, spec, tmp_path)
    assert err.field == "player.template" and "nope.j2" in err.message and str(BUILTIN_TEMPLATES) in err.message


def test_error_inside_a_template_file_names_the_file_and_line(tmp_path: Path) -> None:
    template = write(tmp_path / "player" / "t.j2", "line one\n{{ question }}\n{{ undefined_thing }}\n")
    yaml_file = write(tmp_path / "t.yaml", "name: t\nkind: verifiable\nsource: {path: x.jsonl}\n"
                      "player: {template: player/t.j2}\nanswer: {gold: '1'}\n")
    spec = load_task(yaml_file)
    err = render_error(build(spec, tmp_path).episode, ROW, row_number=2)
    assert err.template_file == template and err.template_line == 3
    problem = locate(spec, err)
    assert str(problem).startswith(f"{template}:3: player.template: undefined template variable")
    assert "(row 2)" in str(problem)


def test_error_in_an_inline_template_points_at_the_yaml_field(tmp_path: Path) -> None:
    yaml_file = write(tmp_path / "t.yaml", "name: t\nkind: verifiable\nsource: {path: x.jsonl}\n"
                      "player:\n  prompt: \"{{ nope }}\"\nanswer: {gold: '1'}\n")
    spec = load_task(yaml_file)
    err = render_error(build(spec, tmp_path).episode, ROW)
    assert err.template_file is None
    assert str(locate(spec, err)).startswith(f"{yaml_file}:5:11: player.prompt: ")


# ------------------------------------------------------------------------------------------------ referee
CANDIDATES = ["best answer", "second answer", "third answer", "worst answer"]


def shown_texts(content: str, candidates: list[str]) -> list[str]:
    """The candidates in the order they appear in a rendered prompt."""
    return sorted(candidates, key=content.index)


@pytest.mark.parametrize(("style", "labels"), [("numbers", ["1", "2", "3", "4"]), ("letters", ["A", "B", "C", "D"])])
def test_referee_shows_candidates_shuffled_with_labels(style: str, labels: list[str]) -> None:
    renderer = RefereeRenderer(RefereeSpec(labels=style, shuffle=True), Templates(None))
    view = renderer.render("Which is best?", CANDIDATES, random.Random(3))
    assert view.labels == labels
    assert sorted(view.order) == [0, 1, 2, 3]
    content = view.messages[-1]["content"]
    assert "Which is best?" in content
    assert shown_texts(content, CANDIDATES) == [CANDIDATES[i] for i in view.order]
    for label, i in zip(labels, view.order):
        assert f"[Response {label}]\n{CANDIDATES[i]}\n" in content
    assert view.to_original([0, 1, 2, 3]) == view.order


def test_referee_without_shuffle_keeps_the_order() -> None:
    renderer = RefereeRenderer(RefereeSpec(shuffle=False), Templates(None))
    view = renderer.render("q", CANDIDATES, random.Random(3))
    assert view.order == [0, 1, 2, 3]
    assert shown_texts(view.messages[-1]["content"], CANDIDATES) == CANDIDATES


def test_referee_system_message_and_modes() -> None:
    renderer = RefereeRenderer(RefereeSpec(system="Judge {{ n }} answers.", mode="pairwise"), Templates(None))
    view = renderer.render_order("q", ["x", "y"], [1, 0])
    assert view.messages[0] == {"role": "system", "content": "Judge 2 answers."}
    assert "two candidate responses" in view.messages[1]["content"]
    assert view.messages[1]["content"].index("[Response 1]\ny") < view.messages[1]["content"].index("[Response 2]\nx")


def test_render_order_rejects_a_non_permutation() -> None:
    renderer = RefereeRenderer(RefereeSpec(), Templates(None))
    with pytest.raises(ValueError, match="permutation"):
        renderer.render_order("q", ["x", "y"], [0, 0])


def test_letters_allow_at_most_26_candidates() -> None:
    assert make_labels(26, "letters")[-1] == "Z"
    renderer = RefereeRenderer(RefereeSpec(labels="letters"), Templates(None))
    err = render_error(renderer.render, "q", [f"c{i}" for i in range(27)], None)
    assert err.field == "referee.labels"
    err = render_error(build, task(preference(referee={"labels": "letters"}, max_candidates=30)), None)
    assert err.field == "referee.labels"


def test_preference_gold_maps_back_to_best_first() -> None:
    renderer = build(task(preference(score="kendall")), None)
    ep = renderer.episode({"prompt": "q", "ranked": CANDIDATES}, row_number=1, seed=0, position=9)
    order, labels = ep.payload.order, ep.payload.labels
    # gold lists shown positions, best first: the best candidate is shown at gold[0], and so on
    assert [order[g] for g in ep.payload.gold] == [0, 1, 2, 3]
    content = ep.messages[-1]["content"]
    for rank, g in enumerate(ep.payload.gold):
        assert f"[Response {labels[g]}]\n{CANDIDATES[rank]}\n" in content
    assert len(ep.payload.labels) == 4


def test_balanced_positions_show_the_best_at_every_position_in_turn() -> None:
    """balance_positions (the default): the best candidate sits at row number mod N, the others are shuffled, so in
    any N consecutive rows position alone never predicts the gold."""
    renderer = build(task(preference()), None)
    row = {"prompt": "q", "ranked": CANDIDATES}
    orders = [renderer.episode(row, row_number=n, seed=0, position=n).payload.order for n in range(40)]
    assert [o.index(0) for o in orders] == [n % 4 for n in range(40)]
    assert len({tuple(o) for o in orders}) >= 12  # the other three still vary (6 arrangements per slot)


def test_shuffle_is_reproducible_per_seed_and_position_and_varies_across_positions() -> None:
    renderer = build(task(preference(balance_positions=False)), None)
    row = {"prompt": "q", "ranked": CANDIDATES}

    def order(seed: int, position: int) -> list[int]:
        return renderer.episode(row, row_number=1, seed=seed, position=position).payload.order

    assert order(0, 5) == order(0, 5)
    again = build(task(preference(balance_positions=False)), None)
    assert again.episode(row, row_number=1, seed=0, position=5).payload.order == order(0, 5)
    across_positions = {tuple(order(0, p)) for p in range(40)}
    assert len(across_positions) >= 10  # 24 permutations; 40 positions must not collapse onto a few
    assert [order(0, p) for p in range(10)] != [order(1, p) for p in range(10)]
    firsts = [order(0, p).index(0) for p in range(200)]  # the best candidate is not parked in one slot
    assert all(20 <= firsts.count(slot) <= 80 for slot in range(4))


def test_stable_seed_is_fixed_across_runs() -> None:
    assert stable_seed(0, "task", 1, 2) == stable_seed(0, "task", 1, 2)
    assert stable_seed(0, "task", 1, 2) != stable_seed(0, "task", 2, 1)
    assert stable_seed("a") == int.from_bytes(__import__("hashlib").sha256(b"a").digest()[:8], "little")


@pytest.mark.parametrize(
    ("ranked", "message"),
    [
        (["only one"], "1 candidates, expected 2..3"),
        (["a", "b", "c", "d"], "4 candidates, expected 2..3"),
        (["same", "other", "same"], "identical"),
        ("not a list", "list of strings"),
        (["a", 2], "list of strings"),
    ],
)
def test_candidate_limits_and_identical_candidates_are_rejected(ranked: Any, message: str) -> None:
    renderer = build(task(preference(max_candidates=3)), None)
    err = render_error(renderer.episode, {"prompt": "q", "ranked": ranked}, row_number=8)
    assert err.field == "candidates" and message in err.message and err.row_number == 8


def test_min_above_max_candidates_is_refused() -> None:
    err = render_error(build, task(preference(min_candidates=5, max_candidates=3)), None)
    assert err.field == "min_candidates"


# ------------------------------------------------------------------------------------------------ records
@pytest.mark.parametrize("kind", ["verifiable", "preference", "open_ended"])
def test_episode_record_round_trip(kind: str) -> None:
    if kind == "verifiable":
        ep = build(task(verifiable()), None).episode(ROW, row_number=3, position=11)
    elif kind == "preference":
        ep = build(task(preference()), None).episode({"prompt": "q", "ranked": CANDIDATES}, row_number=3,
                                                          position=11)
    else:
        spec = task({"name": "o", "kind": "open_ended", "source": {"path": "x"}, "player": {"prompt": "{{ i }}"}})
        ep = build(spec, None).episode({"i": "Write."}, row_number=3, position=11)
    record = ep.to_record()
    assert set(record) == {"prompt", "task", "kind", "episode"}
    assert all(isinstance(record[k], str) for k in ("task", "kind", "episode"))
    back = episode_from_record(json.loads(json.dumps(record)))  # as a datasets/JSON round trip would give it
    assert back == ep
    assert back.position == 11 and back.row == 3
