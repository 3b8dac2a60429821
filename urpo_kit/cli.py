"""The `urpo-kit` command line. Heavy imports (torch, transformers) stay inside the commands that need them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, List

import typer
from rich.console import Console
from rich.table import Table

from urpo_kit.errors import UrpoError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train one model as player and referee in one GRPO loop (URPO), evaluate it, use it as a judge.")
console = Console()
err_console = Console(stderr=True)

SHIPPED_TASKS = Path(__file__).resolve().parent.parent / "tasks"


def reports_errors(fn: Callable) -> Callable:
    """Turn UrpoError (config, source, render problems) into located lines on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UrpoError as e:
            for line in str(e).splitlines():
                err_console.print(f"[red]error[/red] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


@app.command()
@reports_errors
def validate(
    files: List[Path] = typer.Argument(..., help="task or recipe YAML files"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override (repeatable)"),
    allow_code: bool = typer.Option(False, "--allow-code", help="allow dotted-path pkg.mod:fn verifiers/generators"),
    strict: bool = typer.Option(False, "--strict", help="fail when a hub source cannot be reached (default: warn)"),
) -> None:
    """Check tasks and recipes: schema, one row per source, every template, the verifier on the gold answer."""
    from urpo_kit.validate import validate_files

    failed = validate_files(files, overrides, allow_code=allow_code, strict=strict, console=console,
                            err_console=err_console)
    if failed:
        raise typer.Exit(2)


@app.command()
@reports_errors
def render(
    task: Path = typer.Argument(..., help="task YAML"),
    n: int = typer.Option(3, "--n", help="rows to render"),
    seed: int = typer.Option(0, help="seed for candidate shuffling"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override (repeatable)"),
    allow_code: bool = typer.Option(False, "--allow-code"),
) -> None:
    """Show the rendered prompts and gold answers of the first N rows of a task."""
    from rich.panel import Panel

    from urpo_kit.compiler import prepare_task

    prepared = prepare_task(task, overrides, allow_code=allow_code, limit=n)
    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers):
        ep = prepared.renderer.episode(row, row_number=number, seed=seed)
        body = "\n\n".join(f"[bold]{m['role']}[/bold]\n{_escape(m['content'])}" for m in ep.messages)
        body += f"\n\n[bold green]gold[/bold green] {_escape(str(ep.gold))}"
        console.print(Panel(body, title=f"{ep.task} ({ep.kind}) row {number}", expand=False))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command()
def tasks(
    folder: Path = typer.Option(SHIPPED_TASKS, help="folder of task YAMLs"),
    generators: bool = typer.Option(False, "--generators", help="list built-in generators instead"),
) -> None:
    """List shipped tasks (or built-in generators)."""
    if generators:
        from urpo_kit.sources.generators import GENERATORS

        for name, fn in sorted(GENERATORS.items()):
            console.print(f"[bold]{name}[/bold]  {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    from urpo_kit.config.loader import load_task
    from urpo_kit.sources import describe_source

    table = Table("file", "name", "kind", "source", "description")
    for path in sorted(folder.glob("*.yaml")):
        try:
            spec = load_task(path)
        except UrpoError as e:
            table.add_row(path.name, "-", "[red]invalid[/red]", "", str(e).splitlines()[0])
            continue
        table.add_row(path.name, spec.name, spec.kind, describe_source(spec.source), spec.description or "")
    console.print(table)
