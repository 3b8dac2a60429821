"""Likelihood verdicts through `urpo-kit judge`, `urpo-kit serve` and the TRL reward adapter, on the tiny model.

The tiny tokenizer is character-level: after the default prefill `Ranking: [` each label 1-9 is one token, `10` is
two; after `Score:` a score is written ` 7` (two tokens), so pointwise uses the prefill `Score: ` and the scale 1-9.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from fastapi.testclient import TestClient
from test_judge import read_output, write_rows
from test_referee import FakeReferee
from test_serve import ROW, error_of, post_concurrently, words
from typer.testing import CliRunner

from urpo_kit.config.schema import Sampling
from urpo_kit.cli import app as cli
from urpo_kit.errors import UrpoError
from urpo_kit.serve import JudgeSettings, reward_function
from urpo_kit.serve.batch import judge_file
from serve_load import running
from urpo_kit.serve.server import Batching, create_app
from urpo_kit.serve.settings import load_backend

ROWS = [{"id": i, "prompt": f"question {i}", "responses": ["yes", "no", f"maybe {i}"]} for i in range(3)]
POINTWISE = ["--prefill", "Score: ", "--scale", "1", "9"]


def averaged(record: dict, mode: str) -> list[float]:
    """The documented scores, recomputed from the per-judgment probabilities: listwise, the mean probability of
    being ranked first; pairwise, the mean over opponents of the mean win probability."""
    n = len(record["scores"])
    if mode == "listwise":
        per: dict[int, list[float]] = defaultdict(list)
        for shown, probs in zip(record["shown"], record["probabilities"]):
            for candidate, p in zip(shown, probs):
                per[candidate].append(p)
        return [sum(per[i]) / len(per[i]) for i in range(n)]
    wins: dict[tuple[int, int], list[float]] = defaultdict(list)
    for (a, b), (pa, pb) in zip(record["shown"], record["probabilities"]):
        wins[a, b].append(pa)
        wins[b, a].append(pb)
    return [sum(sum(wins[i, j]) / len(wins[i, j]) for j in range(n) if j != i) / (n - 1) for i in range(n)]


# --------------------------------------------------------------------------------------------- judge CLI
@pytest.mark.parametrize(("mode", "total"), [("listwise", 1.0), ("pairwise", 1.5)])
def test_cli_judge_likelihood_writes_probabilities_and_averaged_scores(tmp_path, mode, total):
    source = write_rows(tmp_path / "in.jsonl", ROWS)
    result = CliRunner().invoke(cli, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                                      "--mode", mode, "--verdict", "likelihood", "--debias", "both_orders"])
    assert result.exit_code == 0, result.output
    records = read_output(tmp_path / "o.jsonl")
    assert len(records) == 3
    for record in records:
        assert record["verdict"] == "likelihood" and record["status"] == "ok" and record["raw"] == []
        assert len(record["probabilities"]) == record["attempts"] == (2 if mode == "listwise" else 6)
        for shown, probs in zip(record["shown"], record["probabilities"]):
            assert len(probs) == len(shown) and sum(probs) == pytest.approx(1.0)
        assert sum(record["scores"]) == pytest.approx(total)  # listwise: sums to 1; pairwise: N / 2
        assert record["scores"] == pytest.approx(averaged(record, mode))
        assert 0 < min(record["scores"]) < max(record["scores"]) < 1  # continuous, not ranks


def test_cli_judge_likelihood_pointwise_expected_scores(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:1])
    result = CliRunner().invoke(cli, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                                      "--mode", "pointwise", "--verdict", "likelihood", *POINTWISE])
    assert result.exit_code == 0, result.output
    [record] = read_output(tmp_path / "o.jsonl")
    for probs, expected, score in zip(record["probabilities"], record["parses"], record["scores"]):
        assert len(probs) == 9 and expected == pytest.approx(sum((1 + k) * p for k, p in enumerate(probs)))
        assert score == pytest.approx((expected - 1) / 8)


def test_cli_judge_a_row_whose_labels_are_not_one_token_is_a_row_error(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", [{"prompt": "q", "responses": [str(i) for i in range(10)]}, *ROWS[:1]])
    result = CliRunner().invoke(cli, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(tmp_path / "o.jsonl"),
                                      "--verdict", "likelihood"])
    assert result.exit_code == 1, result.output
    assert f"{source}:1:" in result.output and "rank.j2" in result.output and "`10`" in result.output
    assert len(read_output(tmp_path / "o.jsonl")) == 1


@pytest.mark.parametrize(("args", "rows", "named"), [
    (["--mode", "pointwise", "--prefill", "Score:"], ROWS, ["score.j2", "`1`"]),  # `Score:` + ` 1`: two characters
    (["--mode", "pointwise"], ROWS, ["score.j2", "`10`"]),  # the default prefill `Score: `, the default scale 1-10
])
def test_cli_judge_refuses_multi_token_labels_before_judging(tmp_path, args, rows, named):
    source = write_rows(tmp_path / "in.jsonl", rows)
    out = tmp_path / "o.jsonl"
    result = CliRunner().invoke(cli, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(out),
                                      "--verdict", "likelihood", *args])
    assert result.exit_code == 2, result.output
    assert "not one token" in result.output and "tokenizer" in result.output
    assert all(word in result.output for word in named), result.output
    assert "Traceback" not in result.output and not out.exists()


def test_cli_judge_rejects_a_reversed_scale(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", ROWS)
    result = CliRunner().invoke(cli, ["judge", "-m", "tiny:llama", "-i", str(source), "-o", str(tmp_path / "o"),
                                      "--mode", "pointwise", "--scale", "9", "1"])
    assert result.exit_code == 2 and "scale must be" in result.output


def test_switching_verdict_re_judges_a_resumed_output(tmp_path):
    source = write_rows(tmp_path / "in.jsonl", ROWS)
    backend, out = load_backend("tiny:llama"), tmp_path / "o.jsonl"
    judge_file(source, out, backend, JudgeSettings(sampling=Sampling(temperature=0.0, top_p=1.0, max_new_tokens=2)), model="tiny")
    report = judge_file(source, out, backend, JudgeSettings(verdict="likelihood"), model="tiny")
    assert (report.already_done, report.judged) == (0, 3)
    assert [r["verdict"] for r in read_output(out)] == ["sample"] * 3 + ["likelihood"] * 3


# --------------------------------------------------------------------------------------------- serve
@pytest.fixture(scope="module")
def tiny_backend():
    return load_backend("tiny:llama")


def tiny_client(backend, **kwargs) -> TestClient:
    settings = JudgeSettings(sampling=Sampling(temperature=0.0, max_new_tokens=4))
    return TestClient(create_app(backend, model="tiny", settings=settings, count_tokens=words, **kwargs))


def test_serve_per_request_likelihood_returns_probabilities(tiny_backend):
    with tiny_client(tiny_backend) as client:
        response = client.post("/v1/judge", json={"rows": [ROW], "verdict": "likelihood", "mode": "pairwise"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["mode"], body["verdict"]) == ("pairwise", "likelihood")
        [result] = body["results"]
        assert result["verdict"] == "likelihood" and result["raw"] == [] and len(result["probabilities"]) == 3
        assert sum(result["scores"]) == pytest.approx(1.5)
        sampled = client.post("/v1/judge", json=ROW).json()  # the server's default: sample
        assert sampled["verdict"] == "sample" and sampled["results"][0]["probabilities"] == []
        assert client.get("/health").json()["verdict"] == "sample"


def test_serve_refuses_unreadable_labels_per_request(tiny_backend):
    with tiny_client(tiny_backend) as client:
        ten = {"rows": [ROW, {"prompt": "q", "responses": list("abcdefghij")}], "verdict": "likelihood"}
        response = client.post("/v1/judge", json=ten)
        assert response.status_code == 422
        error = error_of(response)
        assert error["code"] == "verdict_unreadable" and "row 1" in error["message"] and "`10`" in error["message"]
        pointwise = client.post("/v1/judge", json={"rows": [ROW], "verdict": "likelihood", "mode": "pointwise"})
        assert pointwise.status_code == 422 and "score.j2" in error_of(pointwise)["message"]
        assert client.post("/v1/judge", json={"rows": [ROW], "verdict": "best"}).status_code == 422
        assert client.post("/v1/judge", json={"rows": [ROW], "verdict": "likelihood"}).status_code == 200


def test_serve_likelihood_needs_a_backend_that_reads_probabilities():
    with TestClient(create_app(FakeReferee(), model="fake", count_tokens=words)) as client:
        response = client.post("/v1/judge", json={"rows": [ROW], "verdict": "likelihood"})
        assert response.status_code == 422 and "HF backend" in error_of(response)["message"]
    with pytest.raises(UrpoError, match="HF backend"):
        create_app(FakeReferee(), model="fake", count_tokens=words, settings=JudgeSettings(verdict="likelihood"))


def test_serve_batches_never_mix_verdicts(tiny_backend):
    with tiny_client(tiny_backend, batching=Batching(window_s=0.2, max_rows=64)) as client:
        bodies = [{"rows": [ROW], "verdict": ("likelihood" if i % 2 else "sample")} for i in range(6)]
        responses = post_concurrently(client, bodies)
        assert all(r.status_code == 200 for r in responses)
        for body, response in zip(bodies, responses):
            [result] = response.json()["results"]
            assert result["verdict"] == body["verdict"]
            assert bool(result["probabilities"]) == (body["verdict"] == "likelihood") == (not result["raw"])
        assert client.get("/health").json()["batches"] < 6  # concurrent requests did share batches


def test_cli_serve_likelihood_fails_at_start_up(monkeypatch):
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: pytest.fail("served"))
    result = CliRunner().invoke(cli, ["serve", "-m", "tiny:llama", "--verdict", "likelihood", "--mode", "pointwise"])
    assert result.exit_code == 2 and "not one token" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------------------------- reward adapter
def test_reward_function_with_likelihood_gives_continuous_rewards(tiny_backend):
    prompts, completions = ["p"] * 3 + ["q"] * 3 + ["alone"], ["a", "bb", "c c", "d", "ee", "f?", "g"]
    listwise = reward_function(tiny_backend, verdict="likelihood")(prompts, completions)
    assert sum(listwise[:3]) == pytest.approx(1.0) and sum(listwise[3:6]) == pytest.approx(1.0)
    assert listwise[6] == 0.5 and len(set(listwise[:6])) == 6  # P(ranked first): no ties, no parse failures
    pairwise = reward_function(tiny_backend, mode="pairwise", verdict="likelihood")(prompts, completions)
    assert sum(pairwise[:3]) == pytest.approx(1.5) and all(0 < r < 1 for r in pairwise)
    app = create_app(tiny_backend, model="tiny", count_tokens=words)
    with running(app) as url:
        remote = reward_function(url, verdict="likelihood")(prompts, completions)
    assert remote == pytest.approx(listwise)  # the server judges with the per-request verdict


def test_reward_function_refuses_unreadable_labels_at_construction(tiny_backend):
    with pytest.raises(UrpoError, match="not one token"):
        reward_function(tiny_backend, mode="pointwise", verdict="likelihood")
