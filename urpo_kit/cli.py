"""The `urpo-kit` command line. Heavy imports (torch, transformers) stay inside the commands that need them."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.table import Table

from urpo_kit.config.files import ALLOW_PATH_HELP
from urpo_kit.console import make_console
from urpo_kit.errors import UrpoError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train one model as player and referee in one GRPO loop (URPO), evaluate it, use it as a judge.")
console = make_console()
err_console = make_console(stderr=True)

# transformers 5 warns at every generation that TRL still uses the `gradient_checkpointing` names (renamed for v6);
# that is TRL's to change, and the repeated warning would bury the training log.
warnings.filterwarnings("ignore", message=r".* is deprecated and will be removed in v6", category=FutureWarning)

SHIPPED_TASKS = Path(__file__).resolve().parent.parent / "tasks"
ALLOW_PATH = typer.Option([], "--allow-path", metavar="DIR", help=ALLOW_PATH_HELP)


def reports_errors(fn: Callable) -> Callable:
    """Turn UrpoError (config, source, render problems) into located lines on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UrpoError as e:
            from rich.markup import escape  # messages quote user text: `[/x]` must not be read as markup

            for line in str(e).splitlines():
                err_console.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper


@app.command()
@reports_errors
def validate(
    files: List[Path] = typer.Argument(..., help="task, recipe or eval suite YAML files"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override (repeatable)"),
    allow_code: bool = typer.Option(False, "--allow-code", help="allow dotted-path pkg.mod:fn verifiers/generators"),
    strict: bool = typer.Option(False, "--strict", help="fail when a hub source cannot be reached (default: warn)"),
    rows: Optional[int] = typer.Option(None, "--rows", min=1, help="read at most N rows per source (default: all)"),
    allow_path: List[Path] = ALLOW_PATH,
) -> None:
    """Check tasks, recipes and eval suites as deep as training goes before its model loads: schema, names, every
    row of each source, every template, a referee prefill, the reward path on the gold answer, a recipe's suites."""
    from urpo_kit.config.files import allowed_paths
    from urpo_kit.validate import validate_files

    with allowed_paths(allow_path):
        failed = validate_files(files, overrides, allow_code=allow_code, strict=strict, console=console,
                                err_console=err_console, rows=rows)
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
    allow_path: List[Path] = ALLOW_PATH,
    role: Optional[str] = typer.Option(None, "--role", metavar="player|referee",
                                       help="only the prompts of this role (default: both)"),
) -> None:
    """Show every prompt the model sees for the first N rows of a task, with the gold: the player's prompt, the
    referee's prompt over the candidates (preference), or over example answers with its prefill (open-ended)."""
    from rich.panel import Panel

    from urpo_kit.compiler import prepare_task
    from urpo_kit.config.files import allowed_paths

    if role not in (None, "player", "referee"):
        raise UrpoError(f"--role takes player or referee, not {role!r}")
    with allowed_paths(allow_path):
        prepared = prepare_task(task, overrides, allow_code=allow_code, limit=n)
        episodes = [prepared.task.episode(row, row_number=number, seed=seed)
                    for row, number in zip(prepared.rows.rows, prepared.rows.row_numbers)]
    for ep, number in zip(episodes, prepared.rows.row_numbers):
        prompts = prepared.task.prompts(ep)
        if role is not None and role not in prompts:
            raise UrpoError(f"{task}: a {ep.kind} task shows the model no {role} prompt (it has: {', '.join(prompts)})")
        for shown_role, messages in prompts.items():
            if role not in (None, shown_role):
                continue
            body = "\n\n".join(f"[bold]{m['role']}[/bold]\n{_escape(m['content'])}" for m in messages)
            body += f"\n\n[bold green]gold[/bold green] {_escape(ep.payload.gold_text())}"
            console.print(Panel(body, title=f"{ep.task} ({ep.kind}) row {number}: {shown_role} prompt", expand=False))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@app.command()
@reports_errors
def schema(
    kind: Optional[str] = typer.Argument(None, metavar="[task|recipe|suite]", help="the file kind to print"),
    write: Optional[Path] = typer.Option(None, "--write", help="write every generated doc (schemas and "
                                                              "reference.md) under this docs folder instead"),
) -> None:
    """Print the JSON Schema of a task, recipe or eval-suite file (for editors: see README), or regenerate docs/."""
    from urpo_kit import docs

    if write is not None:
        for path in docs.write(write):
            console.print(f"written: {path}", highlight=False)
        return
    if kind not in docs.FILE_KINDS:
        raise UrpoError(f"give one of {', '.join(docs.FILE_KINDS)} (or --write DOCS_FOLDER)")
    typer.echo(docs.schema_text(kind), nl=False)


@app.command()
def tasks(
    folder: Path = typer.Option(SHIPPED_TASKS, help="folder of task YAMLs"),
    generators: bool = typer.Option(False, "--generators", help="list built-in generators instead"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override applied to every task "
                                                               "(repeatable)"),
) -> None:
    """List shipped tasks (or built-in generators)."""
    if generators:
        from urpo_kit.sources.generators import GENERATORS

        for name, fn in sorted(GENERATORS.items()):
            console.print(f"[bold]{name}[/bold]  {(fn.__doc__ or '').strip().splitlines()[0]}")
        return
    from urpo_kit.kinds import load_task
    from urpo_kit.sources import describe_source

    # names and kinds are never cut to `…` (at 80 columns, e.g. piped, they were); the rest folds or wraps
    table = Table()
    table.add_column("file", overflow="fold")
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("description", ratio=1)
    for path in sorted(folder.glob("*.yaml")):
        try:
            spec = load_task(path, overrides)
        except UrpoError as e:
            table.add_row(path.name, "-", "[red]invalid[/red]", "", str(e).splitlines()[0])
            continue
        table.add_row(path.name, spec.name, spec.kind, describe_source(spec.source), spec.description or "")
    console.print(table)


# judge and serve: registered from a typer-only module; torch, transformers and FastAPI load inside the commands
from urpo_kit.serve.commands import judge_command, serve_command  # noqa: E402

app.command("judge")(reports_errors(judge_command))
app.command("serve")(reports_errors(serve_command))

# train: registered from a typer-only module; torch, transformers and TRL load inside the command
from urpo_kit.train.cli import train_command  # noqa: E402

app.command("train")(reports_errors(train_command))


@app.command("eval")
@reports_errors
def eval_(
    args: List[str] = typer.Argument(None, metavar="SUITE.yaml [key.path=value ...] | RUN_A RUN_B",
                                     help="an eval suite (see recipes/eval/) and overrides (shorthand for --set), "
                                          "or two runs with --compare"),
    overrides: List[str] = typer.Option([], "--set", "-s", help="key.path=value override (repeatable)"),
    model: str = typer.Option(None, "--model", help="model to evaluate: hub id, folder, bundled:NAME (default: the suite's)"),
    output: Path = typer.Option(None, "--output", help="run folder (default: the suite's output_dir/NAME-TIME)"),
    compare: bool = typer.Option(False, "--compare", help="print and plot two run folders side by side"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bars"),
    verbose: bool = typer.Option(False, "--verbose", help="also show the libraries' progress bars and info logs"),
    allow_path: List[Path] = ALLOW_PATH,
) -> None:
    """Evaluate a model on a suite: player benchmarks through lm-eval, referee benchmarks, win rate; or compare runs."""
    from urpo_kit.config.files import allowed_paths
    from urpo_kit.eval.command import eval_command
    from urpo_kit.quiet import quiet_libraries

    with quiet_libraries(verbose), allowed_paths(allow_path):
        eval_command(args or [], overrides=overrides, model=model, output=output, compare=compare,
                     progress=not no_progress, console=console)
