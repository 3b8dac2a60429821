"""`urpo-kit serve`: the HTTP API, its errors and limits, dynamic batching, the reward adapter through it, and a
short load test with the tiny model on loopback."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fastapi.testclient import TestClient
from test_referee import FakeReferee, perfect_reply

from urpo_kit.config.schema import Sampling
from urpo_kit.errors import UrpoError
from urpo_kit.serve import JudgeSettings, reward_function
from serve_load import run_load, running
from urpo_kit.serve.server import Batching, Limits, create_app

ROW = {"id": "r", "prompt": "Pick the largest.", "responses": ["3", "9", "5"]}


def words(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def make_client(backend=None, **kwargs) -> TestClient:
    app = create_app(backend or FakeReferee(), model="fake", count_tokens=words, **kwargs)
    return TestClient(app)


@pytest.fixture
def client():
    with make_client() as c:
        yield c


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]


def test_judge_one_row_and_many(client):
    one = client.post("/v1/judge", json=ROW)
    assert one.status_code == 200, one.text
    [result] = one.json()["results"]
    assert result["ranking"] == [1, 2, 0] and result["status"] == "ok" and result["id"] == "r"
    many = client.post("/v1/judge", json={"rows": [ROW, {"prompt": "q", "chosen": "8", "rejected": "2"}],
                                          "mode": "pairwise"})
    body = many.json()
    assert body["mode"] == "pairwise" and [r["ranking"] for r in body["results"]] == [[1, 2, 0], [0, 1]]
    assert body["results"][1]["correct"] == 1.0
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["rows_judged"] == 3


@pytest.mark.parametrize("body", [b'{"prompt": "q", "responses": ["a", "b"]', b"not json at all", b""])
def test_malformed_json_is_400(client, body):
    response = client.post("/v1/judge", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"


def test_a_body_not_sent_as_json_says_how_to_send_it(client):
    response = client.post("/v1/judge", content=json.dumps(ROW), headers={"Content-Type": "text/plain"})
    assert response.status_code == 422 and "application/json" in error_of(response)["message"]


@pytest.mark.parametrize(("body", "code", "words_in_message"), [
    ({"prompt": "q", "responses": [str(i) for i in range(17)]}, "too_many_responses", ["row 0", "17", "16"]),
    ({"rows": [ROW] * 65}, "too_many_rows", ["65", "64"]),
    ({"prompt": "q", "responses": ["a", "b " * 1025]}, "too_many_tokens", ["response 1", "1025"]),
    ({"prompt": "q " * 2049, "responses": ["a", "b"]}, "too_many_tokens", ["prompt", "2049"]),
    ({"prompt": "q", "responses": ["a"]}, "invalid_request", ["at least 2 responses"]),
    ({"rows": [ROW, {"prompt": "q"}]}, "invalid_request", ["rows.1", "responses"]),
    ({"rows": []}, "invalid_request", ["rows"]),
    ({"rows": [ROW], "mode": "best"}, "invalid_request", ["mode"]),
    ([1, 2], "invalid_request", ["JSON object"]),
])
def test_invalid_requests_are_422_with_a_message(client, body, code, words_in_message):
    response = client.post("/v1/judge", json=body)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == code and all(w in error["message"] for w in words_in_message), error


def test_an_oversize_body_is_413_with_or_without_content_length():
    with make_client(limits=Limits(max_body_bytes=2000)) as client:
        big = {"prompt": "q", "responses": ["a", "b" * 3000]}
        response = client.post("/v1/judge", json=big)
        assert response.status_code == 413 and error_of(response)["code"] == "body_too_large"
        chunks = iter([json.dumps(big).encode()[i:i + 500] for i in range(0, 3100, 500)])
        response = client.post("/v1/judge", content=chunks, headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers and response.status_code == 413
        assert client.post("/v1/judge", json=ROW).status_code == 200


def test_a_token_is_required_when_set():
    with make_client(token="s3cret") as client:
        missing = client.post("/v1/judge", json=ROW)
        assert missing.status_code == 401 and error_of(missing)["code"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/judge", json=ROW, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.post("/v1/judge", json=ROW, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert client.get("/health").status_code == 200


def test_letter_labels_cap_the_responses_at_start_up():
    with pytest.raises(UrpoError, match="at most 26"):
        create_app(FakeReferee(), model="fake", count_tokens=words, settings=JudgeSettings(labels="letters"),
                   limits=Limits(max_responses=30))


def test_other_http_errors_are_json(client):
    assert error_of(client.get("/v1/nothing"))["code"] == "http_404"
    assert error_of(client.get("/v1/judge"))["code"] == "http_405"


def test_openapi_schema_describes_the_api(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/v1/judge"]["post"]
    assert {"200", "400", "401", "413", "422"} <= set(post["responses"])
    assert "oneOf" in json.dumps(post["requestBody"]) and "HTTPBearer" in json.dumps(post["security"])
    assert {"JudgeRow", "JudgeRequest", "JudgeResponse", "JudgeResult"} <= set(schema["components"]["schemas"])


class SlowReferee(FakeReferee):
    """Takes 50 ms per generate call (like a model: a batch costs about as much as one), fails on "boom"."""

    def generate(self, prompts, sampling):
        time.sleep(0.05)
        if any("boom" in m[-1]["content"] for m in prompts):
            raise RuntimeError("the model exploded")
        return super().generate(prompts, sampling)


def post_concurrently(client: TestClient, bodies: list) -> list:
    responses: list = [None] * len(bodies)

    def send(i: int) -> None:
        responses[i] = client.post("/v1/judge", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return responses


def test_concurrent_requests_share_batches_and_a_failure_stays_with_its_request():
    backend = SlowReferee()
    with make_client(backend, batching=Batching(window_s=0.02, max_rows=64)) as client:
        bodies = [ROW] * 11 + [{"prompt": "boom", "responses": ["1", "2"]}]
        responses = post_concurrently(client, bodies)
        assert [r.status_code for r in responses] == [200] * 11 + [500]
        assert error_of(responses[-1])["code"] == "judge_failed" and "exploded" in error_of(responses[-1])["message"]
        assert all(r.json()["results"][0]["ranking"] == [1, 2, 0] for r in responses[:11])
        health = client.get("/health").json()
        assert health["batches"] < 12 and health["mean_batch_rows"] > 1


def test_one_request_at_a_time_without_batching():
    backend = SlowReferee()
    with make_client(backend, batching=Batching(window_s=0, max_rows=1)) as client:
        responses = post_concurrently(client, [ROW] * 5)
        assert all(r.status_code == 200 for r in responses)
        assert backend.calls == [1] * 5


def test_a_full_queue_is_429():
    with make_client(SlowReferee(), limits=Limits(max_queued_rows=2)) as client:
        statuses = [r.status_code for r in post_concurrently(client, [{"rows": [ROW, ROW]}] * 4)]
        assert 429 in statuses and 200 in statuses and not any(s >= 500 for s in statuses)


def test_reward_function_through_the_server_matches_local():
    prompts, completions = ["p"] * 3 + ["q"] * 2, ["2", "8", "5", "9", "1"]
    local = reward_function(FakeReferee(), mode="listwise")(prompts, completions)
    app = create_app(FakeReferee(), model="fake", count_tokens=words, token="t")
    with running(app) as url:
        remote = reward_function(url, mode="listwise", token="t", rows_per_request=1)
        assert remote(prompts, completions) == local == [0.0, 1.0, 0.5, 1.0, 0.0]
        with pytest.raises(RuntimeError, match="401"):
            reward_function(url)(prompts, completions)


def test_a_short_load_test_with_the_tiny_model():
    from urpo_kit.serve.settings import load_backend

    settings = JudgeSettings(sampling=Sampling(temperature=0.0, max_new_tokens=8))
    app = create_app(load_backend("tiny:llama"), model="tiny:llama", settings=settings)
    payloads = [{"prompt": f"question {i}", "responses": [f"answer {j}" for j in range(3)]} for i in range(48)]
    with running(app) as url:
        result = run_load(url, payloads, concurrency=8, max_seconds=120)
    assert result.requests == 48 and result.statuses[200] == 48 and result.server_errors == 0


def test_perfect_reply_matches_the_templates():
    """Guard for the fake: the built-in templates still show responses the way FakeReferee reads them."""
    with make_client() as client:
        for mode in ("listwise", "pairwise", "pointwise"):
            [result] = client.post("/v1/judge", json={"rows": [ROW], "mode": mode}).json()["results"]
            assert result["ranking"] == [1, 2, 0] and perfect_reply("") == "Some thoughts.\nRanking: "


def test_cli_serve_wires_options_into_the_app(monkeypatch):
    from typer.testing import CliRunner

    from urpo_kit.cli import app as cli

    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: started.update(app=app, **kwargs))
    monkeypatch.setenv("URPO_KIT_TOKEN", "tok")
    result = CliRunner().invoke(cli, ["serve", "-m", "tiny:llama", "--port", "9", "--max-responses", "3",
                                      "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert (started["host"], started["port"]) == ("127.0.0.1", 9)
    with TestClient(started["app"]) as client:
        assert client.post("/v1/judge", json=ROW).status_code == 401
        auth = {"Authorization": "Bearer tok"}
        too_many = client.post("/v1/judge", json={"prompt": "q", "responses": list("abcd")}, headers=auth)
        assert error_of(too_many)["code"] == "too_many_responses"
        ok = client.post("/v1/judge", json=ROW, headers=auth)
        assert ok.status_code == 200 and ok.json()["model"] == "tiny:llama"
