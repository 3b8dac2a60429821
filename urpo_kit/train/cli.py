"""`urpo-kit train`: typer and rich only at import time; torch, transformers and TRL load inside the command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from urpo_kit.config.files import ALLOW_PATH_HELP
from urpo_kit.console import make_console

# wide enough for the held-out table's metric names and intervals when the output is a file or a CI log
console = make_console(width=None if sys.stdout.isatty() else 160)


def heldout_table(heldout: dict[int, dict[str, float]], run_dir: Path | None = None) -> Table | None:
    """Held-out figures at the first and the last evaluated step (accuracy metrics only, with their 95% intervals),
    or None without any. With the run folder, the change carries the paired bootstrap interval over the rows both
    steps' evaluations scored (read from their eval folders), which tells a real change from noise."""
    from urpo_kit.eval.report import RESULTS_FILE, load_run, paired_changes, with_interval
    from urpo_kit.eval.stats import Change
    from urpo_kit.train.callbacks import heldout_folder

    if not heldout:
        return None
    first, last = min(heldout), max(heldout)
    changes: dict[str, Change | str] = {}
    if run_dir is not None:
        before, after = (heldout_folder(run_dir, step) / RESULTS_FILE for step in (first, last))
        if before.is_file() and after.is_file():
            changes = paired_changes(load_run(before), load_run(after))
    names = sorted(k for k in {**heldout[first], **heldout[last]} if k.endswith("accuracy"))
    table = Table(title="Held-out evaluation", title_justify="left")
    table.add_column("metric")
    table.add_column(f"step {first}", justify="right")
    table.add_column(f"step {last}", justify="right")
    table.add_column("change", justify="right")
    for name in names:
        a, b, change = heldout[first].get(name), heldout[last].get(name), changes.get(name)
        if not isinstance(change, Change):  # no paired interval: the plain difference
            change = f"{b - a:+.3f}" if a is not None and b is not None else ""
        table.add_row(name, with_interval(heldout[first], name), with_interval(heldout[last], name), str(change))
    return table


def train_command(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.path=value overrides, e.g. grpo.steps=5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in output_dir"),
    allow_code: bool = typer.Option(False, "--allow-code", help="allow dotted-path pkg.mod:fn verifiers/generators"),
    allow_path: List[Path] = typer.Option([], "--allow-path", metavar="DIR", help=ALLOW_PATH_HELP),
) -> None:
    """Train one model as player and referee (URPO) with TRL's GRPOTrainer; see recipes/quickstart.yaml."""
    from urpo_kit.config.files import allowed_paths
    from urpo_kit.config.loader import load_recipe
    from urpo_kit.train.trainer import is_main_process, train

    with allowed_paths(allow_path):
        spec = load_recipe(recipe, overrides or [])
        if allow_code:
            spec.allow_code = True
        result = train(spec, resume=resume)
    if not is_main_process():
        return
    console.print(f"[green]done[/green] {result.steps} steps in {result.seconds / 60:.1f} min; run folder "
                  f"{result.run_dir} (metrics.jsonl, tensorboard/, plots/), final model {result.final_dir}")
    table = heldout_table(result.heldout, result.run_dir)
    if table is None:
        console.print("no held-out evaluation (the recipe names no eval.suites, or eval.every is 0)")
    else:
        console.print(table)
