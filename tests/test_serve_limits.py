"""`urpo-kit serve` against hostile clients (issue 12, items 1, 7, 8, 10): the work one request may cause, the
generation batch, slow and half-sent requests, the connection cap, text that is not Unicode, the token first."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.testclient import TestClient
from test_referee import FakeReferee
from test_serve import ROW, error_of, make_client, words

from urpo_kit.serve.connections import ConnectionLimits, uvicorn_options
from urpo_kit.serve.server import Limits, create_app
from urpo_kit.referee import HFBackend, SamplingParams


# ----------------------------------------------------------------------------------------------- item 1
def test_tokens_are_limited_per_row_and_per_request():
    """Counts within their limits can still add up to a huge request: tokens bound it (`words` counts here)."""
    limits = Limits(max_responses=16, max_response_tokens=100, max_row_tokens=300, max_request_tokens=2000)
    with make_client(limits=limits) as client:
        row = {"prompt": "q", "responses": [" ".join(["w"] * 90)] * 4}  # 361 tokens
        response = client.post("/v1/judge", json=row)
        assert response.status_code == 422 and "361 tokens together; the limit is 300" in error_of(response)["message"]
        rows = [{"prompt": "q", "responses": [" ".join(["w"] * 90)] * 3}] * 10  # 271 each: 2710 in all
        response = client.post("/v1/judge", json={"rows": rows})
        assert response.status_code == 422 and "limit per request is 2000" in error_of(response)["message"]
        assert client.post("/v1/judge", json={"rows": rows[:7]}).status_code == 200


def test_pairwise_work_counts_every_pair():
    limits = Limits(max_request_tokens=100)
    with make_client(limits=limits) as client:
        row = {"prompt": "q", "responses": ["a b c d e"] * 8}  # listwise reads 41 tokens, pairwise 28 x 11 = 308
        assert client.post("/v1/judge", json=row).status_code == 200
        pairwise = client.post("/v1/judge", json={"rows": [row], "mode": "pairwise"})
        assert pairwise.status_code == 422 and "308 prompt tokens" in error_of(pairwise)["message"]


def test_generation_batches_are_bounded_in_tokens():
    from urpo_kit.models import tiny_model

    model, tokenizer = tiny_model()
    prompts = [[{"role": "user", "content": "x" * n}] for n in (400, 30, 20, 10)]
    sizes: list[int] = []
    backend = HFBackend(model, tokenizer, batch_size=16, batch_tokens=600, progress=sizes.append)
    out = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=4))
    assert sizes == [1, 3] and len(out) == 4  # the long prompt alone, the three short ones together
    assert out == HFBackend(model, tokenizer, batch_size=1).generate(prompts, SamplingParams(0.0, 1.0, 4))


# ----------------------------------------------------------------------------------------------- items 8, 10
def test_text_that_is_not_unicode_is_a_422_in_json():
    with make_client() as client:
        body = b'{"prompt": "\\ud800", "responses": ["a", "b"]}'
        response = client.post("/v1/judge", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and "not valid Unicode" in error_of(response)["message"]


def test_an_unforeseen_failure_is_a_json_500():
    def broken(texts: list[str]) -> list[int]:
        raise RuntimeError("tokenizer exploded")

    app = create_app(FakeReferee(), model="fake", count_tokens=broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/v1/judge", json=ROW)
        assert response.status_code == 500 and error_of(response)["code"] == "internal_error"


def test_the_token_is_checked_before_the_body_is_parsed():
    with make_client(token="s3cret") as client:
        response = client.post("/v1/judge", content=b"{not json", headers={"Content-Type": "application/json"})
        assert response.status_code == 401 and error_of(response)["code"] == "unauthorized"


# ----------------------------------------------------------------------------------------------- item 7
@pytest.fixture
def server() -> Iterator[tuple[int, ConnectionLimits]]:
    """A real uvicorn server on loopback with short timeouts and a cap of 3 connections."""
    limits = ConnectionLimits(max_connections=3, header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=1)
    app = create_app(FakeReferee(), model="fake", count_tokens=words, connections=limits)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **uvicorn_options(limits))
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.01)
    port = instance.servers[0].sockets[0].getsockname()[1]
    yield port, limits
    instance.should_exit = True
    thread.join(5)


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(data)
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_unfinished_headers_are_closed_with_a_408(server):
    port, _ = server
    sock = connect(port, b"POST /v1/judge HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    reply = answer(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b'"header_timeout"' in reply
    assert 0.4 < time.monotonic() - start < 3


def test_a_body_sent_too_slowly_is_closed_with_a_408(server):
    port, _ = server
    sock = connect(port, b"POST /v1/judge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"prompt\"")
    reply = answer(sock)
    assert b" 408 " in reply.split(b"\r\n")[0] and b'"body_timeout"' in reply


def test_over_the_cap_the_slowest_client_makes_room_and_health_stays_quick(server):
    port, limits = server
    held = [connect(port, b"GET /health HTTP/1.1\r\n") for _ in range(limits.max_connections)]
    time.sleep(0.1)
    health = connect(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    start = time.monotonic()
    assert answer(health).startswith(b"HTTP/1.1 200") and time.monotonic() - start < 0.4  # before any timeout
    evicted = answer(held[0])
    assert evicted.startswith(b"HTTP/1.1 503") and b'"too_many_connections"' in evicted


def test_over_the_cap_with_every_connection_busy_a_new_one_is_refused(server):
    port, limits = server
    busy = [connect(port, b"POST /v1/judge HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
            for _ in range(limits.max_connections)]  # headers done: each is a request waiting for its body
    time.sleep(0.1)
    assert answer(connect(port)).startswith(b"HTTP/1.1 503")
    assert all(b'"body_timeout"' in answer(sock) for sock in busy)


def test_a_kept_alive_connection_gets_the_header_timeout_again(server):
    port, _ = server
    sock = connect(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # then nothing more
    reply = answer(sock)
    assert b"HTTP/1.1 408" in reply
