"""`urpo-kit serve`: the referee behind HTTP, with requests from all clients batched into shared generations.

Generation dominates the cost of a judgment, and a batch of N sequences costs far less than N single ones, so the
server collects whatever requests arrive within a short window (or while the previous batch is generating) and
judges them in one `Judge.judge` call per (mode, verdict) on a single worker thread. The event loop only validates
and queues, so slow or malformed clients never hold the model.

Errors are JSON `{"error": {"code": ..., "message": ...}}`: 400 malformed JSON, 401 missing or wrong bearer token
(checked before the body is read), 408 headers or body not received in time, 413 body too large, 422 invalid rows
(text that is not valid Unicode included), a limit exceeded or labels a likelihood verdict cannot read as one
token, 429 queue full, 500 the judge itself (or anything else) failed, 503 too many connections. The limits, and
why each exists: `Limits` (what a request may cost), `ConnectionLimits` (what a client may hold, connections.py),
and the backend's generation batch (sequences and tokens per forward pass).
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, AsyncIterator, Callable, Literal, Sequence, Union

from fastapi import Body, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, Discriminator, Tag
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from urpo_kit.config.schema import Mode, VerdictKind
from urpo_kit.errors import UrpoError
from urpo_kit.referee import Judge, JudgeItem, Verdict
from urpo_kit.referee.backends import Backend
from urpo_kit.referee.rows import JudgeRow, RowInput, judge_item, row_key, to_result
from urpo_kit.referee.view import MAX_LETTER_LABELS
from urpo_kit.serve.api import JudgeRequest, JudgeResponse
from urpo_kit.serve.connections import ConnectionLimits
from urpo_kit.serve.settings import JudgeSettings

JudgeKind = tuple[Mode, VerdictKind]  # what one judge call may hold: requests of one mode and one verdict


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the server answers 413/422/429 instead of working. Counts alone do
    not bound the work (64 rows x 16 responses x 1,000 tokens each passed them and took gigabytes), so tokens are
    limited per row (the longest prompt a judgment can be) and per request (what all its judgments read)."""

    max_body_bytes: int = 1_000_000
    max_rows: int = 64              # rows per request
    max_responses: int = 16         # responses per row
    max_prompt_tokens: int = 2048
    max_response_tokens: int = 1024
    max_row_tokens: int = 4096      # prompt + all responses of a row: what a listwise judgment reads
    max_request_tokens: int = 65536  # prompt tokens of all the judgments a request makes (pairwise: every pair)
    max_queued_rows: int = 1024     # rows waiting for the model, all clients together


@dataclass(frozen=True)
class Batching:
    """Dynamic batching: wait up to `window_s` after a request for others, up to `max_rows` rows per batch.
    `Batching(0, 1)` judges one request at a time (the baseline of the load test)."""

    window_s: float = 0.005
    max_rows: int = 64


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    mode: Mode
    verdict: VerdictKind
    queued_rows: int
    batches: int
    rows_judged: int
    mean_batch_rows: float


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_SHAPE_HINT = ('the body must be a JSON object, sent as Content-Type: application/json: one row '
               '({"prompt": ..., "responses": [...]}) or {"rows": [...]}')


def _shape(value: Any) -> str:
    """Which request shape a body is: `{"rows": [...]}` or a bare row."""
    return "batch" if isinstance(value, dict) and "rows" in value else "row"


RequestBody = Annotated[
    Union[Annotated[JudgeRequest, Tag("batch")], Annotated[JudgeRow, Tag("row")]],
    Discriminator(_shape),
]


# --------------------------------------------------------------------------------------------- batching
@dataclass
class _Pending:
    kind: JudgeKind
    items: list[JudgeItem]
    future: asyncio.Future


class Batcher:
    """Queues requests from the event loop and judges them in batches on one worker thread."""

    def __init__(self, judge: Callable[[JudgeKind, list[JudgeItem]], list[Verdict]], batching: Batching,
                 max_queued_rows: int):
        self._judge, self.batching, self.max_queued_rows = judge, batching, max_queued_rows
        self.queued_rows = self.batches = self.rows_judged = 0

    def start(self) -> None:
        """Start the batching loop in the running event loop (the app's lifespan); `close` ends it."""
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None  # taken from the queue but left for the next batch (it did not fit)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="urpo-judge")
        self._task = asyncio.create_task(self._run())

    async def submit(self, kind: JudgeKind, items: list[JudgeItem]) -> list[Verdict]:
        if self.queued_rows + len(items) > self.max_queued_rows:
            raise ApiError(429, "busy", f"{self.queued_rows} rows are waiting (limit {self.max_queued_rows}); "
                                        "retry shortly", {"Retry-After": "1"})
        future = asyncio.get_running_loop().create_future()
        self.queued_rows += len(items)
        self._queue.put_nowait(_Pending(kind, items, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            rows = sum(len(p.items) for p in batch)
            self.queued_rows -= rows
            outcomes = await loop.run_in_executor(self._executor, self._judge_batch, batch)
            self.batches += 1
            self.rows_judged += rows
            for pending, outcome in zip(batch, outcomes):
                if pending.future.done():  # the client went away
                    continue
                if isinstance(outcome, Exception):  # the model failed: say so, as JSON
                    pending.future.set_exception(ApiError(500, "judge_failed", f"{type(outcome).__name__}: {outcome}"))
                else:
                    pending.future.set_result(outcome)

    def close(self) -> None:
        self._task.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def _collect(self) -> list[_Pending]:
        """The next request, then whatever else is queued after the window, up to `max_rows` rows in all. Requests
        are never split, so a request larger than `max_rows` is a batch of its own."""
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, rows = [first], len(first.items)
        if self.batching.window_s > 0 and rows < self.batching.max_rows:
            await asyncio.sleep(self.batching.window_s)
        while rows < self.batching.max_rows and not self._queue.empty():
            pending = self._queue.get_nowait()
            if rows + len(pending.items) > self.batching.max_rows:
                self._carry = pending
                break
            batch.append(pending)
            rows += len(pending.items)
        return batch

    def _judge_batch(self, batch: list[_Pending]) -> list[list[Verdict] | Exception]:
        """One judge call per (mode, verdict) in the batch; if it fails, each request is retried alone so that one
        bad request fails only itself."""
        outcomes: list[list[Verdict] | Exception] = [[] for _ in batch]
        by_kind: dict[JudgeKind, list[int]] = {}
        for i, pending in enumerate(batch):
            by_kind.setdefault(pending.kind, []).append(i)
        for kind, members in by_kind.items():
            try:
                verdicts = self._judge(kind, [item for i in members for item in batch[i].items])
            except Exception as error:  # noqa: BLE001 - reported to the clients, never lost
                if len(members) == 1:
                    outcomes[members[0]] = error
                    continue
                for i in members:
                    try:
                        outcomes[i] = self._judge(kind, batch[i].items)
                    except Exception as single:  # noqa: BLE001
                        outcomes[i] = single
                continue
            start = 0
            for i in members:
                outcomes[i] = verdicts[start:start + len(batch[i].items)]
                start += len(batch[i].items)
        return outcomes


# --------------------------------------------------------------------------------------------- limits
class RequestGuard:
    """Checks what can be checked before the app reads a request: the bearer token (401 before any body is
    parsed), then the body's size (413, whatever Content-Length claims; a chunked body has none) and the time it
    takes to arrive (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float, token: str | None):
        self.app, self.max_bytes, self.body_timeout_s, self.token = app, max_bytes, body_timeout_s, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"].startswith("/v1/") and not self._authorized(headers):
            await _reply(scope, receive, send, ApiError(401, "unauthorized", "missing or wrong bearer token "
                                                        "(Authorization: Bearer ...)", {"WWW-Authenticate": "Bearer"}))
            return
        declared = headers.get(b"content-length")
        too_large = ApiError(413, "body_too_large", f"request body over {self.max_bytes} bytes")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(scope, receive, send, too_large)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                await _reply(scope, receive, send, ApiError(408, "body_timeout", "request body not received within "
                                                                                 f"{self.body_timeout_s:g} s"))
                return
            if message["type"] != "http.request":  # the client disconnected
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _reply(scope, receive, send, too_large)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and secrets.compare_digest(credentials.strip(), self.token.encode())


async def _reply(scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    await error_response(error.status, error.code, error.message, error.headers)(scope, receive, send)


def check_limits(rows: Sequence[RowInput], limits: Limits, count_tokens: Callable[[list[str]], list[int]],
                 work: Callable[[int, list[int]], int]) -> None:
    """Raise a 422 ApiError naming the first row and field over a limit. `work(prompt, responses)` is the prompt
    tokens the judgments of a row read, given its token counts."""
    if len(rows) > limits.max_rows:
        raise ApiError(422, "too_many_rows", f"{len(rows)} rows in one request; the limit is {limits.max_rows}")
    total = 0
    for i, row in enumerate(rows):
        if len(row.responses) > limits.max_responses:
            raise ApiError(422, "too_many_responses", f"row {i} has {len(row.responses)} responses; the limit is "
                                                      f"{limits.max_responses}")
        prompt, *responses = count_tokens([row.prompt, *row.responses])
        if prompt > limits.max_prompt_tokens:
            raise ApiError(422, "too_many_tokens", f"row {i}: the prompt has {prompt} tokens; the limit is "
                                                   f"{limits.max_prompt_tokens}")
        for j, n in enumerate(responses):
            if n > limits.max_response_tokens:
                raise ApiError(422, "too_many_tokens", f"row {i}: response {j} has {n} tokens; the limit is "
                                                       f"{limits.max_response_tokens}")
        if prompt + sum(responses) > limits.max_row_tokens:
            raise ApiError(422, "too_many_tokens", f"row {i}: prompt and responses have {prompt + sum(responses)} "
                                                   f"tokens together; the limit is {limits.max_row_tokens}")
        total += work(prompt, responses)
        if total > limits.max_request_tokens:
            raise ApiError(422, "too_many_tokens", f"rows 0-{i}: their judgments read {total} prompt tokens; the "
                                                   f"limit per request is {limits.max_request_tokens}")


def check_readable(judge: Judge, rows: Sequence[RowInput]) -> None:
    """Raise a 422 ApiError naming the first row the judge cannot show (e.g. label `10` of a row of 10 responses is
    not one token for a likelihood verdict), before the request is queued with others."""
    for i, row in enumerate(rows):
        if problem := judge.problem(len(row.responses)):
            raise ApiError(422, "verdict_unreadable", f"row {i}: {problem}")


def tokenizer_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token counts with the model's own tokenizer: the limits are in the units the model pays for."""
    return lambda texts: [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


# --------------------------------------------------------------------------------------------- the app
def create_app(backend: Backend, *, model: str, settings: JudgeSettings = JudgeSettings(),
               limits: Limits = Limits(), batching: Batching = Batching(),
               connections: ConnectionLimits = ConnectionLimits(),
               count_tokens: Callable[[list[str]], list[int]] | None = None, token: str | None = None) -> FastAPI:
    """The FastAPI app around one backend. `count_tokens` defaults to the backend's tokenizer; `token`, when set,
    is the bearer token `/v1/judge` requires. A bad template, or a likelihood verdict whose labels or scores are not
    one token each, raises UrpoError here, at start-up."""
    if settings.labels == "letters" and limits.max_responses > MAX_LETTER_LABELS:
        raise UrpoError(f"letter labels allow at most {MAX_LETTER_LABELS} responses; lower max_responses "
                        f"({limits.max_responses}) or use number labels")
    if count_tokens is None:
        count_tokens = tokenizer_counter(backend.tokenizer)  # type: ignore[attr-defined]
    judges: dict[JudgeKind, Judge] = {(settings.mode, settings.verdict): settings.judge(backend)}

    def judge_for(kind: JudgeKind) -> Judge:
        """The judge of a request's mode and verdict, built on first use (on the event loop, so that a likelihood
        judge the backend or tokenizer cannot serve is a 422 for that request, not a failed batch)."""
        if kind not in judges:
            try:
                judges[kind] = settings.judge(backend, kind[0], verdict=kind[1])
            except UrpoError as e:
                raise ApiError(422, "verdict_unreadable", str(e)) from None
        return judges[kind]

    def judge(kind: JudgeKind, items: list[JudgeItem]) -> list[Verdict]:
        settings.seed_batch([item.key for item in items])
        return judges[kind].judge(items)

    batcher = Batcher(judge, batching, limits.max_queued_rows)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            batcher.close()

    app = FastAPI(title="urpo-kit judge", version="1", lifespan=lifespan,
                  description="A URPO referee as a reward model: rank or score responses to a prompt.")
    app.add_middleware(RequestGuard, max_bytes=limits.max_body_bytes, body_timeout_s=connections.body_timeout_s,
                       token=token)
    # the token is checked by RequestGuard, before the body is read; this declares it in the OpenAPI schema
    bearer = HTTPBearer(auto_error=False, description="required when the server was started with a token")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err["type"] == "json_invalid" for err in errors):
            detail = errors[0].get("ctx", {}).get("error", "")
            return error_response(400, "malformed_json", f"the request body is not valid JSON: {detail}".rstrip(": "))
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err["loc"] if p not in ("body", "batch", "row"))
            if not where and err["type"] != "value_error":  # the body is empty, not an object, or not JSON
                empty = err["type"] == "missing"
                return error_response(400 if empty else 422, "malformed_json" if empty else "invalid_request",
                                      _SHAPE_HINT)
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if where else message)
        return error_response(422, "invalid_request", "; ".join(lines))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        return error_response(e.status_code, f"http_{e.status_code}", str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, e: Exception) -> JSONResponse:
        """Anything unforeseen is still a JSON error (the traceback goes to the server log)."""
        return error_response(500, "internal_error", f"{type(e).__name__}: {e}")

    errors = {status: {"model": ErrorBody} for status in (400, 401, 408, 413, 422, 429, 500, 503)}

    @app.post("/v1/judge", response_model=JudgeResponse, responses=errors, dependencies=[Depends(bearer)])
    async def judge_rows(body: Annotated[RequestBody, Body()]) -> JudgeResponse:
        """Judge one row or `{"rows": [...]}`; rows from concurrent requests share generation batches."""
        batch = body if isinstance(body, JudgeRequest) else None
        rows = batch.rows if batch else [body]
        kind = (batch.mode if batch and batch.mode else settings.mode,
                batch.verdict if batch and batch.verdict else settings.verdict)
        inputs = [row.input for row in rows]
        judge = judge_for(kind)
        check_limits(inputs, limits, count_tokens, judge.prompt_tokens)
        check_readable(judge, inputs)
        verdicts = await batcher.submit(kind, [judge_item(x, row_key(x)) for x in inputs])
        return JudgeResponse(model=model, mode=kind[0], verdict=kind[1],
                             results=[to_result(x, v, kind[1], row.id) for x, v, row in zip(inputs, verdicts, rows)])

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness and batching statistics; needs no token."""
        mean = batcher.rows_judged / batcher.batches if batcher.batches else 0.0
        return Health(model=model, mode=settings.mode, verdict=settings.verdict, queued_rows=batcher.queued_rows,
                      batches=batcher.batches, rows_judged=batcher.rows_judged, mean_batch_rows=round(mean, 3))

    return app

