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
    """The held-out table (`card.heldout_summary`: accuracies with their 95% intervals at the first and the last
    evaluated step, the change with its paired interval) for the console, or None without any evaluation."""
    from urpo_kit.eval.command import rich_table
    from urpo_kit.train.card import heldout_summary

    summary = heldout_summary(heldout, run_dir)
    return None if summary is None else rich_table("Held-out evaluation", *summary)


def train_command(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    positional: Optional[List[str]] = typer.Argument(None, metavar="[key.path=value ...]",
                                                     help="overrides, shorthand for --set, e.g. grpo.steps=5"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override (repeatable)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in output_dir"),
    allow_code: bool = typer.Option(False, "--allow-code", help="allow dotted-path pkg.mod:fn verifiers/generators"),
    verbose: bool = typer.Option(False, "--verbose", help="also show the libraries' progress bars and info logs"),
    allow_path: List[Path] = typer.Option([], "--allow-path", metavar="DIR", help=ALLOW_PATH_HELP),
) -> None:
    """Train one model as player and referee (URPO) with TRL's GRPOTrainer; see recipes/quickstart.yaml."""
    from urpo_kit.config.files import allowed_paths
    from urpo_kit.config.loader import load_recipe
    from urpo_kit.eval import run_suite
    from urpo_kit.quiet import quiet_libraries
    from urpo_kit.train.trainer import is_main_process, train

    with allowed_paths(allow_path):
        spec = load_recipe(recipe, [*(positional or []), *overrides])
        if allow_code:
            spec.allow_code = True
        with quiet_libraries(verbose):
            result = train(spec, resume=resume, run_suite=run_suite)
    if not is_main_process():
        return
    console.print(f"[green]done[/green] {result.steps} steps in {result.seconds / 60:.1f} min; run folder "
                  f"{result.run_dir} (README.md model card, metrics.jsonl, tensorboard/, plots/), final model "
                  f"{result.final_dir}")
    table = heldout_table(result.heldout, result.run_dir)
    if table is None:
        console.print("no held-out evaluation (the recipe names no eval.suites, or eval.every is 0)")
    else:
        console.print(table)
