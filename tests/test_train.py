"""Training end to end with the tiny random model: the run folder, held-out evaluation, resume after a crash.

The tiny model writes random characters, so the tasks here are built for it: a verifiable task whose gold is a
regular expression that some random completions match (so rewards vary within groups), a preference task and an
open-ended task whose self-referee is the tiny model itself (its judgments never parse: equal rewards, counted).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.config.loader import load_recipe
from urpo_kit.config.schema import Recipe
from urpo_kit.eval import run_suite
from urpo_kit.train.metrics import read_metrics
from urpo_kit.train.resume import ResumeError
from urpo_kit.errors import ConfigError
from urpo_kit.train.trainer import build_run, train

ROOT = Path(__file__).resolve().parents[1]

REGEX_TASK = """\
name: regex
kind: verifiable
source: {path: regex.jsonl}
player: {prompt: "{{ q }}"}
answer: {gold: "{{ pattern }}", extract: full, verifier: regex}
"""
PAIRS_TASK = """\
name: pairs
kind: preference
source: {path: pairs.jsonl}
fields: {ranked: "[chosen, rejected]"}
"""
OPEN_TASK = """\
name: open
kind: open_ended
source: {path: open.jsonl}
player: {prompt: "{{ instruction }}"}
self_referee: {mode: listwise, debias: shuffle, sampling: {temperature: 0.0, max_new_tokens: 6}}
"""
RECIPE = """\
model: {name: "tiny:llama"}
tasks:
  - {task: regex.yaml, weight: 0.5}
  - {task: pairs.yaml, weight: 0.25}
  - {task: open.yaml, weight: 0.25}
grpo: {group_size: 2, steps: 4, prompts_per_step: 4, lr: 1.0e-3, save_steps: 2, logging_steps: 1}
roles:
  player: {max_new_tokens: 6}
  referee: {max_new_tokens: 6}
eval: {every: 0}
output_dir: OUT
"""


def write_tasks(folder: Path) -> Path:
    """The three task files with their rows, and a recipe using them; returns the recipe path."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        "regex.jsonl": [{"q": f"Say something {i}.", "pattern": "(?s).*[aeiou].*"} for i in range(8)],
        "pairs.jsonl": [{"prompt": f"Add {i} and 1.", "chosen": str(i + 1), "rejected": str(i + 2)} for i in range(8)],
        "open.jsonl": [{"instruction": f"Write a word about {i}."} for i in range(8)],
    }
    for name, items in rows.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in items))
    (folder / "regex.yaml").write_text(REGEX_TASK)
    (folder / "pairs.yaml").write_text(PAIRS_TASK)
    (folder / "open.yaml").write_text(OPEN_TASK)
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE.replace("OUT", str(folder / "run")))
    return recipe


def recipe_at(tmp_path: Path, *overrides: str) -> Recipe:
    return load_recipe(write_tasks(tmp_path), list(overrides))


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def positions_by_step(run_dir: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for r in train_records(run_dir):
        for step, seen in r["positions"].items():
            out[int(step)] = seen
    return out


def fake_run_suite(suite, model, tokenizer, output_dir=None, *, progress=True) -> dict[str, float]:
    """Stands in for urpo_kit.eval.run_suite (the real one is exercised in the next test)."""
    assert callable(model.generate)
    return {"player/fake/accuracy": 0.25, "referee/fake/accuracy": 0.5}


def test_cli_train_writes_the_run_folder_and_the_heldout_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import urpo_kit.eval

    monkeypatch.setattr(urpo_kit.eval, "run_suite", fake_run_suite)
    recipe = write_tasks(tmp_path)
    suite = ROOT / "recipes" / "eval" / "quickstart-heldout.yaml"
    result = CliRunner().invoke(app, ["train", str(recipe), "grpo.steps=2", "eval.every=1",
                                      f"eval.suites=[{suite}]"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Held-out evaluation" in result.output and "player/fake/accuracy" in result.output
    assert "step 0" in result.output and "step 2" in result.output

    run = tmp_path / "run"
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "heldout"] == [0, 1, 2]
    train_rows = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2]
    assert positions_by_step(run) == {1: [0, 1, 2, 3], 2: [4, 5, 6, 7]}
    last = train_rows[-1]
    for key in ("regex/player/reward_mean", "regex/player/accuracy", "regex/player/zero_var_frac",
                "pairs/referee/accuracy", "pairs/referee/parse_rate", "open/player/length_mean",
                "open/referee/parse_rate", "open/referee/no_signal_rate", "open/referee/time_s", "loss", "reward"):
        assert any(key in r for r in train_rows), key
    assert last["open/referee/no_signal_rate"] == 1.0  # the tiny referee never writes a parseable ranking

    assert load_recipe(run / "recipe.yaml").grpo.steps == 2  # the resolved recipe loads back
    assert json.loads((run / "versions.json").read_text())["trl"] == "1.16.0"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "plots" / "heldout.png").exists() and (run / "plots" / "reward.png").exists()
    assert (run / "checkpoint-2" / "model.safetensors").exists()

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "final")  # save_pretrained weights

    # the console: one line per step and the held-out lines and table, no third-party bars
    assert re.search(r"^step 2/2  player \d\.\d{3}  referee \d\.\d{3}  \d+\.\d s/step  ETA 0:00$", result.output,
                     re.MULTILINE), result.output
    assert re.search(r"^held-out at step 0 \(\d+ s\): player/fake/accuracy 0\.250  referee/fake/accuracy",
                     result.output, re.MULTILINE), result.output
    assert "it/s]" not in result.output and "Loading weights" not in result.output

    card = (run / "README.md").read_text()
    assert card == (run / "final" / "README.md").read_text() and "[None]" not in card
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    for field in ("A fine-tuned version of `tiny:llama`", "URPO (Unified Reward & Policy Optimization",
                  "arXiv 2507.17515", f"`{recipe}`", "| steps x prompts per step x group size | 2 x 4 x 2 |",
                  "| regex | verifiable | player (scored by a verifier) |", "| 4 (50%) |",
                  "| pairs | preference | referee (scored against the gold order) |",
                  "| open | open_ended | player, ranked by itself (listwise, sample verdicts, debias shuffle) |",
                  "| metric | step 0 | step 2 | change |", "| player/fake/accuracy | 0.250 | 0.250 | +0.000 |",
                  "Wilson score interval", "trl 1.16.0"):
        assert field in card, field
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL)[1]  # the card's own usage example, as written
    assert f'model="{run / "final"}"' in snippet
    exec(snippet, {"print": lambda *args: None})


@pytest.mark.slow
def test_heldout_evaluation_runs_the_shared_eval_suite(tmp_path: Path):
    """The real `urpo_kit.eval.run_suite` on the quickstart's held-out suite, at step 0 and after one step."""
    suite = ROOT / "recipes" / "eval" / "quickstart-heldout.yaml"
    recipe = recipe_at(tmp_path, "grpo.steps=1", "eval.every=1", f"eval.suites=[{suite}]")
    result = train(recipe, progress=False, run_suite=run_suite)
    assert sorted(result.heldout) == [0, 1]
    for metrics in result.heldout.values():
        assert 0.0 <= metrics["player/arithmetic-heldout/accuracy"] <= 1.0
        assert 0.0 <= metrics["referee/pairs-heldout/accuracy"] <= 1.0
    assert (Path(recipe.output_dir) / "eval" / "step-00001").is_dir()


def test_steps_by_role_generate_each_step_at_its_roles_length(tmp_path: Path):
    """grpo.steps_by_role: a step holds one role's prompts, and a referee step's completions stop at
    roles.referee.max_new_tokens (2 here: a verdict-first judgment) while player steps run to the player's 6."""
    recipe = recipe_at(tmp_path, "grpo.steps_by_role=true", "roles.referee.max_new_tokens=2", "grpo.steps=4")
    run_dir = Path(train(recipe, progress=False).run_dir)
    lengths = {r["step"]: r["completions/max_length"] for r in train_records(run_dir)}
    stream_roles = json.loads((run_dir / "stream.json").read_text())["step_roles"]
    assert sorted(set(stream_roles)) == ["player", "referee"]
    for step, role in enumerate(stream_roles, start=1):
        assert lengths[step] <= (2 if role == "referee" else 6), (step, role, lengths)
    assert max(lengths[s] for s, role in enumerate(stream_roles, start=1) if role == "player") > 2


def test_lora_generation_in_training_runs_the_fast_no_gradient_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """make_trainer hands TRL a policy whose `generate` opens `fast_inference`: TRL's own generation (the only pass
    without gradients in a verifier-only run) goes through the fast LoRA layers, and the run trains."""
    from urpo_kit.models import inference

    calls = {"fast": 0}
    real = inference._fast_forward

    def counting(module, peft_forward, *low_rank):
        fast = real(module, peft_forward, *low_rank)

        def forward(x, *args, **kwargs):
            calls["fast"] += 1
            return fast(x, *args, **kwargs)
        return forward

    monkeypatch.setattr(inference, "_fast_forward", counting)
    recipe_path = write_tasks(tmp_path)
    recipe_path.write_text(recipe_path.read_text().replace('model: {name: "tiny:llama"}',
                                                           'model: {name: "tiny:llama", lora: {r: 4, alpha: 8}}')
                           .replace("  - {task: pairs.yaml, weight: 0.25}\n  - {task: open.yaml, weight: 0.25}\n", ""))
    run = train(load_recipe(recipe_path, ["grpo.steps=2"]), progress=False)
    assert calls["fast"] > 0
    assert [r["step"] for r in train_records(Path(run.run_dir))] == [1, 2]


def test_a_likelihood_trained_referee_step_draws_one_label_and_player_steps_are_unconstrained(tmp_path: Path):
    """referee.verdict: likelihood on the preference task: every referee step's completion is one token, a shown
    label (the rest of the vocabulary suppressed), so every judgment parses; player steps generate freely again."""
    recipe_path = write_tasks(tmp_path)
    (tmp_path / "pairs.yaml").write_text(PAIRS_TASK + "referee: {verdict: likelihood}\nmax_candidates: 2\n")
    recipe = load_recipe(recipe_path, ["grpo.steps_by_role=true", "grpo.steps=4"])
    run_dir = Path(train(recipe, progress=False).run_dir)
    records = {r["step"]: r for r in train_records(run_dir)}
    stream_roles = json.loads((run_dir / "stream.json").read_text())["step_roles"]
    assert "referee" in stream_roles and "player" in stream_roles
    for step, role in enumerate(stream_roles, start=1):
        if role == "referee":
            assert records[step]["completions/max_length"] == 1
            assert records[step]["pairs/referee/parse_rate"] == 1.0
    assert max(records[s]["completions/max_length"] for s, r in enumerate(stream_roles, start=1) if r == "player") > 1


def test_a_label_drawing_referee_step_samples_only_the_labels_at_the_referee_temperature(tmp_path: Path):
    """The settings RoleStepCallback applies per step: a referee step keeps only the label tokens and draws at
    roles.referee.temperature; a player step lifts the suppression and samples at the player's temperature."""
    from transformers import TrainerState

    from urpo_kit.train.callbacks import RoleStepCallback

    recipe_path = write_tasks(tmp_path)
    (tmp_path / "pairs.yaml").write_text(PAIRS_TASK + "referee: {verdict: likelihood}\nmax_candidates: 2\n")
    run = build_run(load_recipe(recipe_path, ["grpo.steps_by_role=true", "roles.referee.temperature=2.5",
                                              "roles.player.temperature=0.9"]), progress=False)
    callback = next(c for c in run.trainer.callback_handler.callbacks if isinstance(c, RoleStepCallback))
    tokenizer = run.trainer.processing_class
    labels = {tokenizer.convert_tokens_to_ids(t) for t in ("1", "2")}
    roles = run.stream.role_steps
    for role in ("referee", "player"):
        callback.on_step_begin(run.trainer.args, TrainerState(global_step=roles.index(role)), None)
        config = run.trainer.generation_config
        if role == "referee":
            kept = set(range(len(tokenizer))) - set(config.suppress_tokens)
            assert kept == labels and config.max_new_tokens == 1 and config.temperature == 2.5
        else:
            assert config.suppress_tokens is None and config.max_new_tokens == 6 and config.temperature == 0.9
        assert run.trainer.generation_kwargs["temperature"] == config.temperature
    assert run.trainer.temperature == 0.9  # the loss reads log-probabilities at the player's temperature


def test_likelihood_trained_verdicts_without_steps_by_role_or_beside_sampled_ones_are_located_errors(
        tmp_path: Path):
    recipe_path = write_tasks(tmp_path)
    (tmp_path / "pairs.yaml").write_text(PAIRS_TASK + "referee: {verdict: likelihood}\nmax_candidates: 2\n")
    with pytest.raises(ConfigError, match="recipe.yaml:.*grpo.steps_by_role.*needs steps_by_role: true"):
        build_run(load_recipe(recipe_path, []))
    (tmp_path / "sampled.yaml").write_text(PAIRS_TASK.replace("name: pairs", "name: sampled"))
    recipe_path.write_text(recipe_path.read_text().replace(
        "  - {task: open.yaml, weight: 0.25}", "  - {task: open.yaml, weight: 0.25}\n  - {task: sampled.yaml}"))
    with pytest.raises(ConfigError, match="sampled.yaml.*referee.verdict.*every trained preference task"):
        build_run(load_recipe(recipe_path, ["grpo.steps_by_role=true"]))
    recipe_path.write_text(recipe_path.read_text().replace("grpo: {", "grpo: {steps_by_role: true, "))
    result = CliRunner().invoke(app, ["validate", str(recipe_path)])
    assert result.exit_code == 2 and "every trained preference task must then use verdict: likelihood" in \
        result.output, result.output


class Crash(Exception):
    pass


class CrashAfterLogging(TrainerCallback):
    """Dies right after step `step` is logged and before it is checkpointed: like a kill -9 between checkpoints."""

    def __init__(self, step: int):
        self.step = step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.global_step == self.step:
            raise Crash()


def test_resume_after_a_crash_continues_the_same_data_order(tmp_path: Path):
    straight = recipe_at(tmp_path / "a")
    assert train(straight, progress=False).steps == 4

    broken = recipe_at(tmp_path / "b")
    with pytest.raises(Crash):
        train(broken, progress=False, callbacks=[CrashAfterLogging(3)])
    assert [r["step"] for r in train_records(Path(broken.output_dir))] == [1, 2, 3]
    with pytest.raises(ResumeError, match="--resume"):
        train(broken, progress=False)
    cut_short = Path(broken.output_dir) / "checkpoint-3"  # as a kill -9 in the middle of saving leaves it
    cut_short.mkdir()
    (cut_short / "model.safetensors").write_bytes(b"")
    resumed = train(broken, resume=True, progress=False)
    assert (Path(broken.output_dir) / "incomplete" / "checkpoint-3").is_dir()

    assert resumed.steps == 4
    # step 3's record from before the crash is dropped and written again by the resumed run, once
    assert [r["step"] for r in train_records(Path(broken.output_dir))] == [1, 2, 3, 4]
    expected = {s: list(range(4 * (s - 1), 4 * s)) for s in range(1, 5)}
    assert positions_by_step(Path(straight.output_dir)) == expected
    assert positions_by_step(Path(broken.output_dir)) == expected


def test_resume_refuses_a_changed_stream(tmp_path: Path):
    recipe = recipe_at(tmp_path, "grpo.steps=2")
    train(recipe, progress=False)
    with pytest.raises(ResumeError, match="seed: 0 -> 1"):
        train(recipe_at(tmp_path, "grpo.steps=2", "seed=1"), resume=True, progress=False)
    (tmp_path / "open.jsonl").write_text('{"instruction": "Something else entirely."}\n')
    with pytest.raises(ResumeError, match="data stream differs"):
        train(load_recipe(tmp_path / "recipe.yaml", ["grpo.steps=2"]), resume=True, progress=False)


def test_resume_after_two_crashes_in_one_checkpoint_write_and_a_torn_log_line(tmp_path: Path):
    """Each crash leaves checkpoint-4 cut short; both are kept aside, the good checkpoints stay, the log line torn
    by the last crash is dropped."""
    recipe = recipe_at(tmp_path, "grpo.save_total_limit=1")
    run = Path(recipe.output_dir)
    with pytest.raises(Crash):
        train(recipe, progress=False, callbacks=[CrashAfterLogging(3)])
    for _ in range(2):
        (run / "checkpoint-4").mkdir()
        (run / "checkpoint-4" / "model.safetensors").write_bytes(b"")
        with pytest.raises(Crash):
            train(recipe, resume=True, progress=False, callbacks=[CrashAfterLogging(3)])
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "kind": "tra')
    assert train(recipe, resume=True, progress=False).steps == 4
    assert sorted(p.name for p in (run / "incomplete").iterdir()) == ["checkpoint-4", "checkpoint-4.2"]
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-4"]
    assert [r["step"] for r in train_records(run)] == [1, 2, 3, 4]


def test_paper_recipe_maps_onto_grpo_config():
    from urpo_kit.train.layout import batch_layout
    from urpo_kit.train.trainer import grpo_config

    recipe = load_recipe(ROOT / "recipes" / "paper.yaml")
    layout = batch_layout(recipe.grpo, 8, whole_groups=True)
    assert layout.per_device_train_batch_size == 4 and layout.gradient_accumulation_steps == 16
    config = grpo_config(recipe, layout, output_dir="/tmp/unused")
    assert config.use_vllm and config.vllm_mode == "colocate"
    assert config.num_generations == 8 and config.max_completion_length == 1024
    assert not config.shuffle_dataset
    assert all(path.exists() for path in recipe.eval.suites)


def test_quickstart_recipe_validates_and_its_suites_exist():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml")
    assert recipe.model.name == "bundled:smollm2-135m-instruct"
    assert recipe.eval.suites and all(path.exists() for path in recipe.eval.suites)


@pytest.mark.slow
def test_bundled_smollm2_trains_one_step_on_the_offline_tasks(tmp_path: Path):
    """The quickstart's model and tasks, cut down to two small steps (one per role, as the quickstart's steps by
    role go): real chat template, real self-referee, a referee step that draws one label after the prefill."""
    short = {"self_referee.sampling.max_new_tokens": 8}
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [
        "grpo.steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2", "grpo.per_device_batch_size=2", "eval.every=0",
        "roles.player.max_new_tokens=8", f"output_dir={tmp_path / 'run'}",
        f"tasks.2.overrides={json.dumps(short)}", "tasks.2.weight=0.45"])  # player step: one of each player task
    result = train(recipe, progress=False)
    assert result.steps == 2
    player, referee = train_records(tmp_path / "run")
    assert player["positions"] == {"1": [0, 1]} and referee["positions"] == {"2": [2, 3]}
    assert {"arithmetic-onestep/player/reward_mean", "instructions-offline/player/reward_mean"} <= set(player)
    assert referee["completions/max_length"] == 1
    assert referee["pairs-synthetic/referee/parse_rate"] == 1.0  # one of the labels, drawn right after the prefill
