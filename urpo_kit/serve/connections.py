"""Connection-level limits for `urpo-kit serve`, below the app: how many connections are held, and how long a
client may take to send its request headers.

Uvicorn (h11) has a keep-alive timeout but none for a request's headers, and holds every connection it accepts: 20
clients sending a byte a second, or 2,000 half-sent requests, stayed open for good and slowed `/health` for everyone.
Its `limit_concurrency` answers 503 only once a request's headers are complete, which a slow client never does. So
the protocol here closes a connection whose headers are not complete `header_timeout_s` after it opened (or after
its previous response), and holds at most `max_connections`: a connection beyond that evicts the one that has waited
longest for its headers (a client that sends its request at once is never the oldest, so slow clients cannot lock
others out), or, when every connection is busy with a request, is refused. Each of these answers with a JSON error
like every other. The body's timeout is the app's (`RequestGuard` in server.py): by then the request has a route.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    """Defaults: 64 connections, 10 s to send the headers, 30 s to send the body, 5 s idle keep-alive."""

    max_connections: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5


def raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection, for use before any request exists."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """Uvicorn's h11 protocol with the connection cap and the header timeout of `limits` (see the docstring)."""

    class Guarded(H11Protocol):
        waiting: dict[Guarded, None] = {}  # connections waiting for request headers, longest first (this server)
        _timer: asyncio.TimerHandle | None = None
        _waiting_for: object = None  # the request cycle in place when the header clock started

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                if not self.waiting:
                    self._close_with(503, "Service Unavailable", "too_many_connections",
                                     f"the server is busy with {limits.max_connections} connections; retry shortly")
                    return
                next(iter(self.waiting))._close_with(
                    503, "Service Unavailable", "too_many_connections",
                    f"the server holds {limits.max_connections} connections; this one, the longest without "
                    "request headers, made room for another")
            self._start_header_clock()

        def handle_events(self) -> None:
            super().handle_events()
            if self._timer is not None and self.cycle is not self._waiting_for:  # the headers are complete
                self._stop_header_clock()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start the next, pipelined, request at once
            if not self.transport.is_closing() and self.cycle is not None and self.cycle.response_complete:
                self._start_header_clock()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_clock()
            super().connection_lost(exc)

        def _start_header_clock(self) -> None:
            self._stop_header_clock()
            self._waiting_for = self.cycle
            self._timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)
            self.waiting[self] = None

        def _stop_header_clock(self) -> None:
            self.waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _header_timeout(self) -> None:
            self._close_with(408, "Request Timeout", "header_timeout",
                             f"request headers not received within {limits.header_timeout_s:g} s")

        def _close_with(self, status: int, reason: str, code: str, message: str) -> None:
            self._stop_header_clock()
            if not self.transport.is_closing():
                self.transport.write(raw_error(status, reason, code, message))
                self.transport.close()

    return Guarded


def uvicorn_options(limits: ConnectionLimits) -> dict[str, object]:
    """The keyword arguments that make `uvicorn.run` (or `uvicorn.Config`) apply `limits`."""
    return {"http": guarded_protocol(limits), "timeout_keep_alive": limits.keep_alive_s}
