"""`urpo-kit train`: typer and rich only at import time; torch, transformers and TRL load inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def heldout_table(heldout: dict[int, dict[str, float]]) -> Table | None:
    """Held-out figures at the first and the last evaluated step (accuracy metrics only), or None without any."""
    if not heldout:
        return None
    first, last = min(heldout), max(heldout)
    names = sorted(k for k in {**heldout[first], **heldout[last]} if k.endswith("accuracy"))
    table = Table(title="Held-out evaluation", title_justify="left")
    table.add_column("metric")
    table.add_column(f"step {first}", justify="right")
    table.add_column(f"step {last}", justify="right")
    table.add_column("change", justify="right")
    for name in names:
        a, b = heldout[first].get(name), heldout[last].get(name)
        change = f"{b - a:+.3f}" if a is not None and b is not None else ""
        table.add_row(name, _fmt(a), _fmt(b), change)
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def train_command(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[List[str]] = typer.Argument(None, help="key.path=value overrides, e.g. grpo.steps=5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the latest checkpoint in output_dir"),
    allow_code: bool = typer.Option(False, "--allow-code", help="allow dotted-path pkg.mod:fn verifiers/generators"),
) -> None:
    """Train one model as player and referee (URPO) with TRL's GRPOTrainer; see recipes/quickstart.yaml."""
    from urpo_kit.config.loader import load_recipe
    from urpo_kit.train.trainer import is_main_process, train

    spec = load_recipe(recipe, overrides or [])
    if allow_code:
        spec.allow_code = True
    result = train(spec, resume=resume)
    if not is_main_process():
        return
    console.print(f"[green]done[/green] {result.steps} steps in {result.seconds / 60:.1f} min; run folder "
                  f"{result.run_dir} (metrics.jsonl, tensorboard/, plots/), final model {result.final_dir}")
    table = heldout_table(result.heldout)
    if table is None:
        console.print("no held-out evaluation (the recipe names no eval.suites, or eval.every is 0)")
    else:
        console.print(table)
