"""Task files from other people: what they may read (their own folder tree, the built-in templates, folders the
user allows), and the bounds on what a few bytes of YAML or Jinja may build (issue 12, items 2 and 3)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.config import files, load_yaml
from urpo_kit.config.yaml_tree import MAX_DEPTH
from urpo_kit.errors import ConfigError
from urpo_kit.kinds import load_task

SECRET = "top-secret-line-42"
TASK = """\
name: t
kind: verifiable
source: {{path: rows.jsonl}}
player: {{{player}}}
answer: {{gold: "{{{{ a }}}}", extract: full}}
"""


def task_folder(tmp_path: Path, player: str = 'prompt: "{{ q }}"', extra: str = "") -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.jsonl").write_text('{"q": "What?", "a": "x"}\n')
    path = folder / "t.yaml"
    path.write_text(TASK.format(player=player) + extra)
    return path


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the task's folder tree."""
    path = tmp_path / "outside" / "secret.yaml"
    path.parent.mkdir()
    path.write_text(f"{SECRET}\n")
    return path


def validate(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


# ----------------------------------------------------------------------------------------------- item 2
def test_a_template_outside_the_task_folder_is_refused_without_its_contents(tmp_path: Path, secret: Path):
    for template in (str(secret), "../outside/secret.yaml"):
        result = validate(str(task_folder(tmp_path, f"template: {template}")))
        assert result.exit_code == 2, result.output
        assert "outside the folders a task file may read" in result.output
        assert SECRET not in result.output


def test_a_symlink_in_the_task_folder_cannot_lead_out(tmp_path: Path, secret: Path):
    path = task_folder(tmp_path, "template: link.j2")
    os.symlink(secret, path.parent / "link.j2")
    result = validate(str(path))
    assert result.exit_code == 2 and "outside the folders" in result.output and SECRET not in result.output


def test_an_include_outside_is_refused_and_never_echoed(tmp_path: Path, secret: Path):
    result = validate(str(task_folder(tmp_path, extra=f"include: {secret}\n")))
    assert result.exit_code == 2 and "outside the folders" in result.output and SECRET not in result.output


def test_allow_path_widens_the_rule_explicitly(tmp_path: Path, secret: Path):
    secret.write_text("Q: {{ q }}")
    path = task_folder(tmp_path, f"template: {secret}")
    assert validate(str(path)).exit_code == 2
    result = validate(str(path), "--allow-path", str(secret.parent))
    assert result.exit_code == 0, result.output


def test_a_value_that_is_not_a_mapping_is_not_quoted(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text(f"{SECRET} and more\n")
    result = validate(str(path))
    assert result.exit_code == 2 and "single value" in result.output and SECRET not in result.output


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/stdin"])
def test_devices_and_pipes_are_never_read(tmp_path: Path, device: str):
    link = tmp_path / "tasks" / "dev.yaml"
    task_folder(tmp_path)
    os.symlink(device, link)
    problems = pytest.raises(ConfigError, load_yaml, link).value.problems
    assert "not a regular file" in problems[0].message


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    path = task_folder(tmp_path, extra="#" * 200 + "\n")
    problems = pytest.raises(ConfigError, load_task, path).value.problems
    assert "larger than 100 bytes" in problems[0].message


def test_a_template_include_inside_a_template_obeys_the_rule(tmp_path: Path, secret: Path):
    path = task_folder(tmp_path, "template: main.j2")
    (path.parent / "main.j2").write_text("{% include 'link.j2' %}")
    os.symlink(secret, path.parent / "link.j2")
    result = validate(str(path))
    assert result.exit_code == 2 and "outside the folders" in result.output and SECRET not in result.output


# ----------------------------------------------------------------------------------------------- item 3
def alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = ["name: t", "kind: verifiable", 'a0: &a0 ["lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_with_a_location(tmp_path: Path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    problems = pytest.raises(ConfigError, load_yaml, path).value.problems
    assert "aliases are expanded" in problems[0].message and problems[0].line is not None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: well under 200 MB more


def test_deep_nesting_is_a_located_error(tmp_path: Path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 900 + "]" * 900 + "\n")
    result = validate(str(path))
    assert result.exit_code == 2 and f"nested deeper than {MAX_DEPTH} levels" in result.output
    assert f"{path}:1:" in result.output and "RecursionError" not in result.output


@pytest.mark.parametrize("prompt", [
    "{{ 'a' * 10**9 }}",
    "{{ 'a' | center(10**9) }}",
    "{{ '%999999999s' % q }}",
    "{{ '{:>999999999}'.format(q) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% for i in range(100000) %}{% for j in range(100) %}{{ q }}{% endfor %}{% endfor %}",
    "{{ 2 ** 100000000 }}",
])
def test_templates_cannot_build_huge_strings(tmp_path: Path, prompt: str):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = validate(str(task_folder(tmp_path, f"prompt: {prompt!r}")))
    assert result.exit_code == 2, result.output
    assert "t.yaml:4" in result.output and "player.prompt" in result.output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


def test_user_text_is_printed_literally(tmp_path: Path):
    path = task_folder(tmp_path)
    (path.parent / "rows.jsonl").write_text('{"q": "1:x:2 [bold]b[/bold]", "a": "x"}\n')
    result = CliRunner().invoke(app, ["render", str(path), "--n", "1"])
    assert result.exit_code == 0 and "1:x:2 [bold]b[/bold]" in result.output
