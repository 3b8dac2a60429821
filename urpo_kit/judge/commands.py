"""The `judge` and `serve` commands. Only typer and rich here: the CLI imports this module at start-up, so torch,
transformers and FastAPI are imported inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional, Tuple

import typer
from rich.table import Table

from urpo_kit.console import make_console

if TYPE_CHECKING:
    from urpo_kit.judge.settings import JudgeSettings

MODEL = typer.Option("bundled:smollm2-135m-instruct", "--model", "-m",
                     help="hub id, local folder or checkpoint, bundled:smollm2-135m-instruct, tiny:llama")
MODE = typer.Option("listwise", help="listwise: rank all responses in one judgment; pairwise: every pair; "
                                     "pointwise: score each response 1-10")
TEMPLATE = typer.Option(None, help="referee template (.j2), from the working directory or built-in, e.g. "
                                   "referee/rank.j2; default by mode: referee/rank.j2, pair.j2, score.j2")
DEBIAS = typer.Option("shuffle", help="presentation order: none, a seeded shuffle per row, or both_orders (the "
                                      "shuffled order and its reverse; reports their agreement)")
SAMPLES = typer.Option(1, min=1, help="judgments per comparison, averaged")
TEMPERATURE = typer.Option(0.0, min=0.0, help="referee sampling temperature (0: greedy)")
MAX_NEW_TOKENS = typer.Option(128, min=1, help="tokens per judgment")
LABELS = typer.Option("numbers", help="candidate labels: [1] [2] ... or [A] [B] ...")
PREFILL = typer.Option(None, help="start of the referee's reply, continued by the model and parsed with it, e.g. "
                                  "'Score:' (pointwise) or 'Ranking: [': small models that ignore the format line "
                                  "follow it; with --verdict likelihood the verdict is read right after it "
                                  "(default 'Ranking: [', pointwise 'Score:')")
VERDICT = typer.Option("sample", help="sample: generate the judgment and parse it; likelihood: read the probability "
                                      "of each label (or score) after the prefill in one forward pass, no parse "
                                      "failure (HF models; each label or score must be one token, checked at "
                                      "start-up); rows then carry `probabilities`")
SCALE = typer.Option((1, 10), metavar="LOW HIGH", help="pointwise score range (likelihood needs one-token scores, "
                                                       "e.g. 1 9)")
SEED = typer.Option(0, help="seed for presentation orders and sampling")
DTYPE = typer.Option("auto", help="auto: bfloat16 on a GPU that has it, else float32 (bfloat16 is ~1.5x faster "
                                  "on CPU)")
BATCH_SIZE = typer.Option(16, min=1, help="sequences per generation batch")
BATCH_TOKENS = typer.Option(16384, min=1, help="padded tokens (prompt + new tokens) per generation batch: bounds the "
                                               "memory of a batch of long prompts, which then runs in smaller "
                                               "batches (one prompt at least)")
THREADS = typer.Option(None, min=1, help="torch CPU threads (default: torch's choice; on a busy shared CPU, 1 "
                                         "avoids oversubscription)")

def _settings(mode: str, template: Optional[Path], debias: str, samples: int, temperature: float,
              max_new_tokens: int, labels: str, prefill: Optional[str], verdict: str, scale: Tuple[int, int],
              seed: int) -> JudgeSettings:
    from urpo_kit.judge.settings import JudgeSettings
    from urpo_kit.referee import SamplingParams

    return JudgeSettings(mode=mode, debias=debias, samples=samples, template=template, labels=labels,
                         prefill=prefill, verdict=verdict, scale=scale, seed=seed,
                         sampling=SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens))


def _template_folders(template: Optional[Path]) -> list[Path]:
    """The folder of a template named on the command line: the operator chose it, so it and its includes may be
    read wherever it is (task files get no such say; see urpo_kit.config.files)."""
    return [template.expanduser().parent] if template else []


def judge_command(
    input: Path = typer.Option(..., "--input", "-i", exists=True, dir_okay=False,
                               help="rows to judge (see the formats above)"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL results, appended; re-running skips rows done"),
    model: str = MODEL,
    mode: Literal["listwise", "pairwise", "pointwise"] = MODE,
    template: Optional[Path] = TEMPLATE,
    debias: Literal["none", "shuffle", "both_orders"] = DEBIAS,
    samples: int = SAMPLES,
    temperature: float = TEMPERATURE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    labels: Literal["numbers", "letters"] = LABELS,
    prefill: Optional[str] = PREFILL,
    verdict: Literal["sample", "likelihood"] = VERDICT,
    scale: Tuple[int, int] = SCALE,
    seed: int = SEED,
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = DTYPE,
    batch_size: int = BATCH_SIZE,
    batch_tokens: int = BATCH_TOKENS,
    threads: Optional[int] = THREADS,
    rows_per_batch: int = typer.Option(32, min=1, help="rows per judging call; the output is flushed after each"),
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
    from urpo_kit.judge.batch import check_paths, judge_file
    from urpo_kit.judge.settings import load_backend

    err = make_console(stderr=True)
    settings = _settings(mode, template, debias, samples, temperature, max_new_tokens, labels, prefill, verdict,
                         scale, seed)
    check_paths(input, output)  # before the model loads
    with err.status(f"loading {model}"):
        backend = load_backend(model, dtype=dtype, batch_size=batch_size, batch_tokens=batch_tokens, threads=threads)
    with allowed_paths(_template_folders(template)):
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


def serve_command(
    model: str = MODEL,
    host: str = typer.Option("127.0.0.1", help="interface to bind; anything but loopback exposes the model"),
    port: int = typer.Option(8000),
    token: Optional[str] = typer.Option(None, envvar="URPO_KIT_TOKEN", show_envvar=True,
                                        help="bearer token /v1/judge requires (prefer the environment variable)"),
    mode: Literal["listwise", "pairwise", "pointwise"] = MODE,
    template: Optional[Path] = TEMPLATE,
    debias: Literal["none", "shuffle", "both_orders"] = DEBIAS,
    samples: int = SAMPLES,
    temperature: float = TEMPERATURE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    labels: Literal["numbers", "letters"] = LABELS,
    prefill: Optional[str] = PREFILL,
    verdict: Literal["sample", "likelihood"] = VERDICT,
    scale: Tuple[int, int] = SCALE,
    seed: int = SEED,
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
) -> None:
    """Serve the referee over HTTP: POST /v1/judge (one row, or {"rows": [...], "mode": ..., "verdict": ...}),
    GET /health, OpenAPI at /docs and /openapi.json. Requests from all clients are batched together."""
    import uvicorn

    from urpo_kit.config.files import allowed_paths
    from urpo_kit.judge.connections import ConnectionLimits, uvicorn_options
    from urpo_kit.judge.server import Batching, Limits, create_app
    from urpo_kit.judge.settings import load_backend

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        make_console(stderr=True).print(f"[yellow]warning[/yellow] serving on {host} without a token: anyone who can "
                                   "reach this port can use the model (set URPO_KIT_TOKEN)")
    settings = _settings(mode, template, debias, samples, temperature, max_new_tokens, labels, prefill, verdict,
                         scale, seed)
    backend = load_backend(model, dtype=dtype, batch_size=batch_size, batch_tokens=batch_tokens, threads=threads)
    limits = Limits(max_body_bytes=max_body_bytes, max_rows=max_rows, max_responses=max_responses,
                    max_prompt_tokens=max_prompt_tokens, max_response_tokens=max_response_tokens,
                    max_row_tokens=max_row_tokens, max_request_tokens=max_request_tokens)
    connections = ConnectionLimits(max_connections=max_connections, header_timeout_s=header_timeout,
                                   body_timeout_s=body_timeout, keep_alive_s=keep_alive)
    with allowed_paths(_template_folders(template)):
        app = create_app(backend, model=model, settings=settings, limits=limits, token=token, connections=connections,
                         batching=Batching(window_s=batch_window_ms / 1000, max_rows=max_batch_rows))
        uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(connections))
