"""Load testing `urpo-kit serve`: a bounded number of requests from concurrent clients, and an in-process server.

Used by `scripts/loadtest_serve.py` (dynamic batching against one request at a time) and by a short test.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence


@dataclass
class LoadResult:
    """Outcome of one load run: HTTP statuses, transport failures, wall time and per-request latencies."""

    statuses: Counter = field(default_factory=Counter)
    failures: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.failures

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.statuses[200] / self.seconds if self.seconds else 0.0

    def latency(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=100)[int(q * 100) - 1] if len(self.latencies) > 1 else 0.0


async def _load(url: str, payloads: Sequence[dict[str, Any]], concurrency: int, headers: dict[str, str],
                timeout: float, max_seconds: float) -> LoadResult:
    import httpx

    out = LoadResult()
    order = itertools.count()
    start = time.perf_counter()

    async def client_loop(client: httpx.AsyncClient) -> None:
        while (i := next(order)) < len(payloads) and time.perf_counter() - start < max_seconds:
            sent = time.perf_counter()
            try:
                response = await client.post("/v1/judge", json=payloads[i])
            except httpx.HTTPError:
                out.failures += 1
                continue
            out.statuses[response.status_code] += 1
            out.latencies.append(time.perf_counter() - sent)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    out.seconds = time.perf_counter() - start
    return out


def run_load(url: str, payloads: Sequence[dict[str, Any]], *, concurrency: int = 16, token: str | None = None,
             timeout: float = 60.0, max_seconds: float = 300.0) -> LoadResult:
    """Send each payload once to `POST {url}/v1/judge` from `concurrency` clients; stop early after `max_seconds`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return asyncio.run(_load(url, payloads, concurrency, headers, timeout, max_seconds))


@contextmanager
def running(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` with uvicorn in a background thread; yields its base URL (port 0: a free port)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
