"""`urpo-kit eval`: run a suite on a model into a run folder, or compare two run folders."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from urpo_kit.config.files import writable_folder
from urpo_kit.errors import UrpoError

__all__ = ["eval_command", "rich_table"]


def rich_table(title: str, header: Sequence[str], rows: list[Sequence[str]]) -> Table:
    """A table for the console (the run folder's reports hold the same rows in markdown)."""
    table = Table(*header, title=title, title_justify="left")
    for row in rows:
        table.add_row(*row)
    return table


def eval_command(args: Sequence[str], *, model: str | None, output: Path | None, compare: bool, progress: bool,
                 console: Console, overrides: Sequence[str] = ()) -> Path:
    """`args` is SUITE.yaml followed by overrides (shorthand for `overrides`, the `--set` values), or (with
    `compare`) two run folders; returns the folder written."""
    if compare:
        if len(args) != 2 or model is not None or overrides:
            raise UrpoError("--compare takes exactly two run folders: urpo-kit eval --compare RUN_A RUN_B")
        from urpo_kit.eval.report import COMPARE_HEADER, compare_runs

        run_a, run_b = Path(args[0]), Path(args[1])
        folder = output or Path("runs") / f"compare-{run_a.name}-vs-{run_b.name}"
        writable_folder(folder)
        console.print(rich_table(f"A = {run_a}   B = {run_b}", COMPARE_HEADER, compare_runs(run_a, run_b, folder)))
        console.print(f"written: {', '.join(str(p) for p in sorted(folder.glob('compare.*')))}")
        return folder
    if not args:
        raise UrpoError("give a suite YAML (or --compare RUN_A RUN_B)")
    suite_path, overrides = Path(args[0]), [*args[1:], *overrides]
    from urpo_kit.config.suite import load_suite
    from urpo_kit.eval.report import summary_table
    from urpo_kit.eval.runner import check_suite, run_suite
    from urpo_kit.models import load_model, load_tokenizer

    suite = load_suite(suite_path, [*overrides, *([f"model.name={model}"] if model else [])])
    check_suite(suite)
    folder = output or suite.output_dir / f"{suite.name}-{datetime.now():%Y%m%d-%H%M%S}"
    writable_folder(folder)  # before the model loads
    console.print(f"loading {suite.model.name}")
    metrics = run_suite(suite, load_model(suite.model), load_tokenizer(suite.model), folder, progress=progress)
    console.print(rich_table(f"{suite.name} on {suite.model.name}", *summary_table({"value [95% CI]": metrics})))
    console.print(f"written: {folder}/results.json, report.md, charts.png")
    return folder
