"""Load test of `urpo-kit serve` on loopback: dynamic batching against one request at a time.

Starts the server in-process on 127.0.0.1 (a free port) twice with the same model: with dynamic batching
(`--window-ms`, `--max-batch-rows`) and with batching off (window 0, one request per batch). Each time it sends
`--requests` requests from `--concurrency` clients (bounded by `--max-seconds`) and reports statuses, throughput,
latency and the batch sizes the server formed; then the throughput ratio.

    python scripts/loadtest_serve.py --requests 500 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from serve_load import LoadResult, run_load, running
from urpo_kit.config.schema import Sampling
from urpo_kit.serve.server import Batching, create_app
from urpo_kit.serve.settings import JudgeSettings, load_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny:llama")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--responses", type=int, default=3, help="responses per row (one row per request)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per judgment")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--max-batch-rows", type=int, default=64)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="per run; stops sending after this")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()

    console = Console()
    backend = load_backend(args.model, batch_size=args.max_batch_rows, threads=args.threads)
    settings = JudgeSettings(sampling=Sampling(temperature=0.0, max_new_tokens=args.max_new_tokens))
    payloads = [{"prompt": f"Question {i}: what is {i} + {i}?",
                 "responses": [f"Answer {j}: it is {2 * i + j}." for j in range(args.responses)]}
                for i in range(args.requests)]
    runs: dict[str, tuple[LoadResult, dict]] = {}
    for name, batching in (("dynamic batching", Batching(args.window_ms / 1000, args.max_batch_rows)),
                           ("one at a time", Batching(0.0, 1))):
        app = create_app(backend, model=args.model, settings=settings, batching=batching)
        with running(app) as url:
            result = run_load(url, payloads, concurrency=args.concurrency, max_seconds=args.max_seconds)
            health = httpx.get(f"{url}/health").json()
        runs[name] = (result, health)

    table = Table("server", "requests", "200", "4xx", "5xx", "failed", "s", "req/s", "p50 ms", "p95 ms",
                  "mean batch rows", title=f"{args.model}, {args.concurrency} clients, {args.responses} responses "
                                           f"per row, {args.max_new_tokens} tokens per judgment")
    for name, (r, health) in runs.items():
        client_errors = sum(n for status, n in r.statuses.items() if 400 <= status < 500)
        table.add_row(name, str(r.requests), str(r.statuses[200]), str(client_errors), str(r.server_errors),
                      str(r.failures), f"{r.seconds:.1f}", f"{r.throughput:.1f}", f"{r.latency(0.5) * 1000:.0f}",
                      f"{r.latency(0.95) * 1000:.0f}", f"{health['mean_batch_rows']:.1f}")
    console.print(table)
    ratio = runs["dynamic batching"][0].throughput / max(runs["one at a time"][0].throughput, 1e-9)
    console.print(f"throughput ratio, dynamic batching / one at a time: [bold]{ratio:.2f}x[/bold]")
    if args.out:
        args.out.write_text(json.dumps({name: {"statuses": dict(r.statuses), "failures": r.failures,
                                               "seconds": r.seconds, "throughput": r.throughput,
                                               "p50": r.latency(0.5), "p95": r.latency(0.95), "health": h}
                                        for name, (r, h) in runs.items()} | {"ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
