"""The run folder's model card (README.md, also in `final/`): what a reader of the folder or of a pushed model needs
without the recipe at hand, in place of TRL's generic card (which names no base model for a local or bundled one).

It names the base model, the method (URPO), the recipe and its GRPO settings, the task mix as realised in the
stream, and the held-out table (the summary table of `urpo-kit eval`, first and last evaluated step), and shows how
`final/` loads with a transformers pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from urpo_kit.config.loader import origin_of
from urpo_kit.config.schema import Recipe
from urpo_kit.kinds import OpenEndedTask, PreferenceTask
from urpo_kit.train.metrics import read_heldout

if TYPE_CHECKING:
    from urpo_kit.compiler import MixedStream, PreparedTask

__all__ = ["CARD_FILE", "heldout_summary", "model_card", "write_model_card"]

CARD_FILE = "README.md"
URPO = ("URPO (Unified Reward & Policy Optimization, [arXiv 2507.17515](https://arxiv.org/abs/2507.17515)): one "
        "model trained as player and as referee in a single GRPO loop")
LOCAL_PREFIXES = ("bundled:", "tiny:")


def heldout_summary(heldout: dict[int, dict[str, float]],
                    run_dir: Path | None = None) -> tuple[list[str], list[list[str]]] | None:
    """The held-out table (header, rows) at the first and the last evaluated step, or None without any evaluation.
    With the run folder, the change carries the paired bootstrap interval over the rows both steps' evaluations
    scored (read from their eval folders), which tells a real change from noise."""
    from urpo_kit.eval.report import RESULTS_FILE, load_run, paired_changes, summary_table
    from urpo_kit.train.callbacks import heldout_folder

    if not heldout:
        return None
    first, last = min(heldout), max(heldout)
    changes = {}
    if run_dir is not None:
        before, after = (heldout_folder(run_dir, step) / RESULTS_FILE for step in (first, last))
        if before.is_file() and after.is_file():
            changes = paired_changes(load_run(before), load_run(after))
    return summary_table({f"step {step}": heldout[step] for step in (first, last)}, changes)


def _role(spec: Any) -> str:
    if isinstance(spec, PreferenceTask):
        return "referee (scored against the gold order)"
    if isinstance(spec, OpenEndedTask):
        judge = spec.self_referee
        return f"player, ranked by itself ({judge.mode}, {judge.verdict} verdicts, debias {judge.debias})"
    return "player (scored by a verifier)"


def _hub_id(name: str) -> str | None:
    """The model's hub id, or None for a bundled, tiny or local model (no `base_model` entry then)."""
    return None if name.startswith(LOCAL_PREFIXES) or Path(name).expanduser().exists() else name


def model_card(recipe: Recipe, tasks: Sequence[PreparedTask], stream: MixedStream, run_dir: Path,
               final_dir: Path) -> str:
    """The card's markdown, YAML front matter first (the metadata a model hub reads)."""
    from urpo_kit.eval.report import INTERVALS, markdown_table
    from urpo_kit.sources import describe_source
    from urpo_kit.train.resume import RECIPE_FILE, versions

    base = recipe.model.name
    hf_sources = sorted({t.spec.source.hf for t in tasks if t.spec.source.hf})
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation",
                            "tags": ["urpo-kit", "urpo", "grpo", "trl"]}
    if _hub_id(base):
        meta["base_model"] = base
    if hf_sources:
        meta["datasets"] = hf_sources
    g, player, referee = recipe.grpo, recipe.roles.params("player"), recipe.roles.params("referee")
    origin = origin_of(recipe)
    settings = [["model", f"`{base}`" + (f" (LoRA r={recipe.model.lora.r})" if recipe.model.lora else "")],
                ["steps x prompts per step x group size", f"{g.steps} x {g.prompts_per_step} x {g.group_size}"],
                ["learning rate, beta (KL), loss", f"{g.lr:g}, {g.beta:g}, {g.loss_type}"],
                ["sampling of every trained completion", f"temperature {player.temperature:g}, "
                                                         f"max {player.max_new_tokens} new tokens"],
                ["self-referee sampling", f"temperature {referee.temperature:g}, "
                                          f"max {referee.max_new_tokens} new tokens"],
                ["seed", str(recipe.seed)]]
    counts, total = stream.realised_counts(), stream.length
    mix = [[t.name, t.spec.kind, _role(t.spec), f"`{describe_source(t.spec.source)}`",
            f"{counts[t.name]} ({counts[t.name] / total:.0%})"] for t in tasks]
    summary = heldout_summary(read_heldout(run_dir), run_dir)
    if summary is None and recipe.eval.suites and recipe.eval.every:
        heldout = "Not run yet.\n"
    elif summary is None:
        heldout = "No held-out evaluation (the recipe names no `eval.suites`, or `eval.every` is 0).\n"
    else:
        suites = ", ".join(f"`{s}`" for s in recipe.eval.suites)
        heldout = (f"Suites {suites}, run by the trainer through `urpo-kit eval`'s code (per-step reports in "
                   f"`eval/`):\n\n{markdown_table(*summary)}\n{INTERVALS}")
    used = versions()
    framework = ", ".join(f"{k} {used[k]}" for k in ("urpo-kit", "trl", "transformers", "torch") if used.get(k))
    return f"""---
{yaml.safe_dump(meta, sort_keys=False)}---

# {run_dir.name}

A fine-tuned version of `{base}`, trained with urpo-kit: {URPO} (TRL's `GRPOTrainer`).

## Use

```python
from transformers import pipeline

generator = pipeline("text-generation", model={json.dumps(str(final_dir))})
messages = [{{"role": "user", "content": "What is 12 + 30?"}}]
print(generator(messages, max_new_tokens=64)[0]["generated_text"][-1]["content"])
```

## Recipe

`{origin or "(built in code)"}`; the resolved recipe (defaults filled in) is `{RECIPE_FILE}` in the run folder.

{markdown_table(["setting", "value"], settings)}
## Task mix

Prompts of the {total}-prompt training stream per task.

{markdown_table(["task", "kind", "trains", "source", "prompts"], mix)}
## Held-out evaluation

{heldout}
## Framework versions

{framework}
"""


def write_model_card(recipe: Recipe, tasks: Sequence[PreparedTask], stream: MixedStream, run_dir: Path,
                     final_dir: Path) -> None:
    """README.md in the run folder and, once it exists, in `final/` (main process only: the caller checks)."""
    text = model_card(recipe, tasks, stream, run_dir, final_dir)
    for folder in (run_dir, final_dir):
        if folder.is_dir():
            (folder / CARD_FILE).write_text(text, encoding="utf-8")
