"""The `judge` and `serve` commands, their referee options generated from the one referee spec. The CLI imports
this module at start-up, so torch, transformers and FastAPI are imported inside the commands."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional, Tuple

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from urpo_kit.config.schema import Sampling
from urpo_kit.console import make_console
from urpo_kit.errors import UrpoError
from urpo_kit.referee.rows import validation_message
from urpo_kit.serve.settings import JUDGE_SAMPLING, JudgeSettings

MODEL = typer.Option("bundled:smollm2-135m-instruct", "--model", "-m",
                     help="hub id, local folder or checkpoint, bundled:smollm2-135m-instruct, tiny:llama")
DTYPE = typer.Option("auto", help="auto: bfloat16 on a GPU that has it, else float32 (bfloat16 is ~1.5x faster "
                                  "on CPU)")
BATCH_SIZE = typer.Option(16, min=1, help="sequences per generation batch")
BATCH_TOKENS = typer.Option(16384, min=1, help="padded tokens (prompt + new tokens) per generation batch: bounds the "
                                               "memory of a batch of long prompts, which then runs in smaller "
                                               "batches (one prompt at least)")
THREADS = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice; on a busy shared CPU, 1 "
                                         "avoids oversubscription)")

SAMPLING_OPTIONS = {"temperature": (float, "referee sampling temperature (0: greedy)"),
                    "top_p": (float, "nucleus sampling mass"),
                    "max_new_tokens": (int, "tokens per judgment")}


def _option_type(annotation: Any) -> Any:
    """A pydantic field type as typer reads it: `X | None` as Optional[X], `tuple[int, int]` as Tuple[int, int]."""
    args = typing.get_args(annotation)
    if type(None) in args:
        return Optional[_option_type(next(a for a in args if a is not type(None)))]
    if typing.get_origin(annotation) is tuple:
        return Tuple[args]  # type: ignore[valid-type]
    return annotation


def referee_options(command: Callable[..., None]) -> Callable[..., None]:
    """One option per field of the referee spec (`JudgeSettings`), generated once for `judge` and `serve`: named and
    described as in a task's `referee:` (the nested `sampling` as --temperature, --top-p, --max-new-tokens), and
    handed to the command as one validated `settings` argument, so a new spec field is a new option everywhere."""
    fields = {name: f for name, f in JudgeSettings.model_fields.items() if name != "sampling"}
    generated = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_option_type(f.annotation),
                                   default=typer.Option(f.default, help=escape(f.description or ""),
                                                        metavar="LOW HIGH" if name == "scale" else None))
                 for name, f in fields.items()]
    generated += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                    default=typer.Option(getattr(JUDGE_SAMPLING, name), help=help_text))
                  for name, (kind, help_text) in SAMPLING_OPTIONS.items()]
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "settings"]

    @functools.wraps(command)
    def with_settings(**kwargs: Any) -> None:
        sampling = {name: kwargs.pop(name) for name in SAMPLING_OPTIONS}
        spec = {name: kwargs.pop(name) for name in fields}
        try:
            settings = JudgeSettings(sampling=Sampling(**sampling), **spec)
        except ValidationError as e:
            raise UrpoError(f"referee options: {validation_message(e)}") from None
        command(settings=settings, **kwargs)

    with_settings.__signature__ = inspect.Signature(own + generated)  # type: ignore[attr-defined]
    return with_settings


def _template_folders(template: Optional[Path]) -> list[Path]:
    """The folder of a template named on the command line: the operator chose it, so it and its includes may be
    read wherever it is (task files get no such say; see urpo_kit.config.files)."""
    return [template.expanduser().parent] if template else []


@referee_options
def judge_command(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False,
                               help="rows to judge (see the formats above)"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL results, appended; re-running skips rows done"),
    model: str = MODEL,
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = DTYPE,
    batch_size: int = BATCH_SIZE,
    batch_tokens: int = BATCH_TOKENS,
    threads: Optional[int] = THREADS,
    rows_per_batch: int = typer.Option(32, min=1, help="rows per judging call; the output is flushed after each"),
    settings: JudgeSettings = JudgeSettings(),
) -> None:
    """Rank or score the responses of each row with a referee model, into resumable JSONL.

    Per row: ranking (response indices, best first), scores in [0, 1] per response (input order; with --verdict
    likelihood the averaged probabilities), status (ok, partial, failed), verdict, raw judgment texts, what each
    judgment was shown, the label probabilities of each judgment (likelihood), agreement between orders
    (both_orders) and, for chosen/rejected rows, whether the chosen response won. Malformed rows are reported with
    their line number and skipped (exit code 1). Rows are keyed by a hash of the row, the settings, the template
    and the model.

    Each input row (JSONL, or .json/.csv/.parquet, optionally .gz) holds a prompt and 2 or more
    responses, in one of these shapes (other keys are ignored; `id` is passed through):

      {"prompt": "...", "responses": ["...", "...", ...]}

      {"prompt": "...", "chosen": "...", "rejected": "..."}   (gold: chosen is better; reports accuracy)

      {"chosen": "...", "rejected": "..."}   (no prompt: hh-rlhf transcripts, split at the last "\\n\\nAssistant:",
      or two message lists, split where they start to differ)

    A prompt may be chat messages ([{"role": "user", "content": "..."}]); a response may be a list of messages.
    """
    from urpo_kit.config.files import allowed_paths
    from urpo_kit.serve.batch import check_paths, judge_file
    from urpo_kit.serve.settings import load_backend

    err = make_console(stderr=True)
    check_paths(input, output)  # before the model loads
    with err.status(f"loading {model}"):
        backend = load_backend(model, dtype=dtype, batch_size=batch_size, batch_tokens=batch_tokens, threads=threads)
    with allowed_paths(_template_folders(settings.template)):
        report = judge_file(input, output, backend, settings, model=model, rows_per_batch=rows_per_batch,
                            console=err)
    out = make_console()
    out.print(f"{input} -> {output} in {report.seconds:.1f} s", highlight=False, soft_wrap=True)
    table = Table("rows", "count")
    table.add_row("judged now", str(report.judged))
    table.add_row("already in the output", str(report.already_done))
    if report.duplicates:
        table.add_row("duplicates (judged once)", str(report.duplicates))
    table.add_row("malformed (skipped)", str(len(report.malformed)))
    for status in ("ok", "partial", "failed"):
        table.add_row(f"parse {status}", str(report.status[status]))
    if report.agreement:
        table.add_row("both-orders agreement", f"{sum(report.agreement) / len(report.agreement):.3f}")
    if report.correct:
        table.add_row("accuracy vs gold (chosen)", f"{sum(report.correct) / len(report.correct):.3f} "
                                                   f"over {len(report.correct)}")
    out.print(table)
    if report.malformed:
        raise typer.Exit(1)


@referee_options
def serve_command(
    model: str = MODEL,
    host: str = typer.Option("127.0.0.1", help="interface to bind; anything but loopback exposes the model"),
    port: int = typer.Option(8000),
    token: Optional[str] = typer.Option(None, envvar="URPO_KIT_TOKEN", show_envvar=True,
                                        help="bearer token /v1/judge requires (prefer the environment variable)"),
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = DTYPE,
    batch_size: int = BATCH_SIZE,
    batch_tokens: int = BATCH_TOKENS,
    threads: Optional[int] = THREADS,
    batch_window_ms: float = typer.Option(5.0, min=0.0, help="how long a request waits for others to batch with"),
    max_batch_rows: int = typer.Option(64, min=1, help="rows per batch (1 with window 0: one request at a time)"),
    max_rows: int = typer.Option(64, min=1, help="rows per request"),
    max_responses: int = typer.Option(16, min=2, help="responses per row"),
    max_prompt_tokens: int = typer.Option(2048, min=1, help="tokens per prompt"),
    max_response_tokens: int = typer.Option(1024, min=1, help="tokens per response"),
    max_row_tokens: int = typer.Option(4096, min=1, help="tokens per row, prompt and all responses together"),
    max_request_tokens: int = typer.Option(65536, min=1, help="prompt tokens all judgments of a request read "
                                                                "(pairwise reads every pair; both_orders and "
                                                                "samples repeat)"),
    max_body_bytes: int = typer.Option(1_000_000, min=1, help="request body size"),
    max_connections: int = typer.Option(64, min=1, help="open connections; more are refused with 503 at once"),
    header_timeout: float = typer.Option(10.0, min=0.1, help="seconds a client has to send a request's headers"),
    body_timeout: float = typer.Option(30.0, min=0.1, help="seconds a client has to send a request's body"),
    keep_alive: int = typer.Option(5, min=1, help="seconds an idle connection is kept open"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
    settings: JudgeSettings = JudgeSettings(),
) -> None:
    """Serve the referee over HTTP: POST /v1/judge (one row, or {"rows": [...], "mode": ..., "verdict": ...}),
    GET /health, OpenAPI at /docs and /openapi.json. Requests from all clients are batched together."""
    import uvicorn

    from urpo_kit.config.files import allowed_paths
    from urpo_kit.serve.connections import ConnectionLimits, uvicorn_options
    from urpo_kit.serve.server import Batching, Limits, create_app
    from urpo_kit.serve.settings import load_backend

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        make_console(stderr=True).print(f"[yellow]warning[/yellow] serving on {host} without a token: anyone who can "
                                   "reach this port can use the model (set URPO_KIT_TOKEN)")
    backend = load_backend(model, dtype=dtype, batch_size=batch_size, batch_tokens=batch_tokens, threads=threads)
    limits = Limits(max_body_bytes=max_body_bytes, max_rows=max_rows, max_responses=max_responses,
                    max_prompt_tokens=max_prompt_tokens, max_response_tokens=max_response_tokens,
                    max_row_tokens=max_row_tokens, max_request_tokens=max_request_tokens)
    connections = ConnectionLimits(max_connections=max_connections, header_timeout_s=header_timeout,
                                   body_timeout_s=body_timeout, keep_alive_s=keep_alive)
    with allowed_paths(_template_folders(settings.template)):
        app = create_app(backend, model=model, settings=settings, limits=limits, token=token, connections=connections,
                         batching=Batching(window_s=batch_window_ms / 1000, max_rows=max_batch_rows))
        uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(connections))
