"""urpo_kit.eval: suites, referee data and scoring (RewardBench protocol), the lm-eval export, reports, and one
offline run end to end with a tiny random model."""

from __future__ import annotations

import math

import gzip
import json
import os
import random
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from urpo_kit.cli import app
from urpo_kit.compiler import prepare_task
from urpo_kit.config.refs import override_strings
from urpo_kit.config.schema import RefereeSpec
from urpo_kit.config.suite import RefereeBenchmark, load_suite
from urpo_kit.errors import ConfigError, SourceError
from urpo_kit.eval import compare_runs, load_run, run_suite
from urpo_kit.eval.lm_bridge import Scorer, export_task, row_scores
from urpo_kit.eval.referee_bench import (
    EXAMPLE_COUNTS,
    PreferenceItem,
    PreferenceSet,
    load_preference_set,
    presentation_orders,
    run_referee_benchmark,
    section_scores,
)
from urpo_kit.eval.report import report_markdown
from urpo_kit.eval.runner import benchmark_names
from urpo_kit.eval.stats import interval, paired_bootstrap
from urpo_kit.models.tiny import tiny_model
from urpo_kit.referee import SamplingParams

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
SUITES = sorted((ROOT / "recipes" / "eval").glob("*.yaml"))
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------------ suites
@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_shipped_suites_load(path: Path) -> None:
    suite = load_suite(path)
    names = benchmark_names(suite)
    assert sum(map(len, names.values())) >= 1


def test_quickstart_heldout_rows_follow_the_training_rows() -> None:
    """The held-out suite takes the 128 rows after the 2000 the quickstart tasks train on: the generators are
    prefix-stable, so the longer stream starts with exactly the training rows (under the suite's other overrides,
    which the quickstart recipe trains with too)."""
    suite = load_suite(ROOT / "recipes" / "eval" / "quickstart-heldout.yaml")
    assert suite.limit == 128
    for bench in (suite.player[0], *suite.referee):
        same = {k: v for k, v in bench.overrides.items() if k not in ("source.n", "source.skip")}
        train = prepare_task(bench.task, override_strings(same)).rows.rows
        longer = prepare_task(bench.task, override_strings({**same, "source.n": 2128})).rows.rows
        held = prepare_task(bench.task, override_strings(bench.overrides), limit=suite.limit).rows.rows
        assert len(train) == 2000 and longer[:2000] == train and held == longer[2000:]


def test_suite_errors_name_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "name: s\nreferee:\n  - source: {path: x.jsonl}\n    oder: both_orders\n")
    with pytest.raises(ConfigError) as err:
        load_suite(path)
    assert re.search(r"s\.yaml:4:5: referee\.0\.oder: unknown key `oder`; did you mean `order`\?", str(err.value))
    path = write(tmp_path / "t.yaml", "name: t\nplayer:\n  - {task: a.yaml, lm_eval: gsm8k}\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:3:.*exactly one of `task`"):
        load_suite(path)
    with pytest.raises(ConfigError, match="at least one"):
        load_suite(write(tmp_path / "u.yaml", "name: u\n"))


def test_clashing_benchmark_names_are_refused(tmp_path: Path) -> None:
    task = ROOT / "tasks" / "pairs-synthetic.yaml"
    path = write(tmp_path / "s.yaml",
                 f"name: s\nreferee:\n  - task: {task}\n  - task: {task}\n    order: both_orders\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:4:.*two referee benchmarks are called `pairs-synthetic`"):
        benchmark_names(load_suite(path))


# ------------------------------------------------------------------------------------------------ referee data
def test_preference_files_pairs_best_of_n_and_skips(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p1", "chosen": "good", "rejected": "bad", "subset": "alpacaeval-easy"},
        {"prompt": "p2", "chosen": ["right"], "rejected": ["w1", "w2", "w3"], "subset": "Math"},
        {"prompt": "p3", "chosen": ["a", "b"], "rejected": ["c", "d"], "subset": "Ties"},
        {"prompt": "p4", "chosen": "same", "rejected": "same"},
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: knock knock",
         "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: no"},
    ]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    data = load_preference_set(RefereeBenchmark(source={"path": path}), name="prefs", limit=None, suite_dir=None)
    assert [(i.prompt, i.candidates, i.subset) for i in data.items] == [
        ("p1", ["good", "bad"], "alpacaeval-easy"),
        ("p2", ["right", "w1", "w2", "w3"], "Math"),
        ("Human: hi\n\nAssistant: hello\n\nHuman: joke?", ["knock knock", "no"], "prefs"),
    ]
    reasons = {s.row_number: s.reason for s in data.skipped}
    assert "Ties" in reasons[3] and "identical" in reasons[4]
    four = load_preference_set(RefereeBenchmark(source={"path": path}, candidates=4), name="p", limit=None,
                               suite_dir=None)
    assert [i.prompt for i in four.items] == ["p2"]
    with pytest.raises(SourceError, match="no usable preference rows"):
        load_preference_set(RefereeBenchmark(source={"path": write_jsonl(tmp_path / "x.jsonl", [{"a": 1}])}),
                            name="x", limit=None, suite_dir=None)


@pytest.mark.skipif(not HH.is_file(), reason="../shared/data/hh-rlhf is not here")
def test_hh_rlhf_file_is_read_in_place() -> None:
    data = load_preference_set(RefereeBenchmark(source={"path": HH}), name="hh", limit=200, suite_dir=None)
    assert len(data.items) + len(data.skipped) == 200 and len(data.items) >= 190
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    item = data.items[0]
    assert first["chosen"].strip().startswith(item.prompt) and first["chosen"].rstrip().endswith(item.candidates[0])
    assert all(i.prompt.startswith("Human:") and len(i.candidates) == 2 for i in data.items)


def test_task_preference_set_uses_the_tasks_referee_prompt() -> None:
    task = ROOT / "tasks" / "ranked-synthetic.yaml"
    data = load_preference_set(RefereeBenchmark(task=task), name="ranked", limit=5, suite_dir=None)
    assert len(data.items) == 5 and data.score == "kendall" and data.base_dir == task.parent
    assert all(3 <= len(i.candidates) <= 4 for i in data.items)


# ------------------------------------------------------------------------------------------------ order, scoring
def test_presentation_orders_are_rewardbenchs_numpy_draws() -> None:
    pairs = [PreferenceItem("p", ["a", "b"], "s", i) for i in range(50)]
    np.random.seed(7)  # what RewardBench's scripts do: one global stream, one draw per item
    expected = [[1, 0] if np.random.rand() > 0.5 else [0, 1] for _ in pairs]
    assert presentation_orders(pairs, 7) == expected
    fours = [PreferenceItem("p", ["a", "b", "c", "d"], "s", i) for i in range(20)]
    np.random.seed(3)
    positions = [np.random.randint(0, 4) for _ in fours]
    assert [o.index(0) for o in presentation_orders(fours, 3)] == positions
    assert all(sorted(o) == [0, 1, 2, 3] for o in presentation_orders(fours, 3))


class Scripted:
    """A referee backend answering from the rendered prompt, so that scoring can be checked exactly."""

    def __init__(self, answer: Callable[[str, list[str]], str]):
        self.answer, self.calls = answer, 0

    def generate(self, prompts, sampling):
        self.calls += len(prompts)
        out = []
        for messages in prompts:
            text = messages[-1]["content"]
            shown = re.findall(r"\[Response (\w)\]\n(.*?)\n\[End of response", text, flags=re.S)
            out.append(self.answer(text, [t for _, t in shown]))
        return out


def always_first(text: str, shown: list[str]) -> str:
    return "Ranking: " + " > ".join(f"[{i + 1}]" for i in range(len(shown)))


def oracle(text: str, shown: list[str]) -> str:
    """Ranks by the gold order written into the synthetic candidates: `good i`, then `bad i.0`, `bad i.1`, ..."""
    order = sorted(range(len(shown)), key=lambda i: -1 if shown[i].startswith("good") else int(shown[i].split(".")[1]))
    return "Ranking: " + " > ".join(f"[{i + 1}]" for i in order)


def preference_set(n: int = 40, candidates: int = 2) -> PreferenceSet:
    items = [PreferenceItem(f"q{i}", [f"good {i}"] + [f"bad {i}.{k}" for k in range(candidates - 1)], "s", i + 1)
             for i in range(n)]
    return PreferenceSet(items, [], "synthetic", RefereeSpec(), None)


def test_a_position_biased_referee() -> None:
    data = preference_set()
    shown_first = sum(o[0] == 0 for o in presentation_orders(data.items, 0)) / len(data.items)
    result = run_referee_benchmark(data, Scripted(always_first), order="random", sampling=GREEDY, seed=0)
    assert result.metrics["accuracy"] == pytest.approx(shown_first) and result.metrics["first_position"] == 1.0
    both = run_referee_benchmark(data, Scripted(always_first), order="both_orders", sampling=GREEDY, seed=0)
    assert both.metrics["accuracy"] == 0.5 and both.metrics["consistency"] == 0.0
    assert both.metrics["random_order_accuracy"] == result.metrics["accuracy"]  # the first order is RewardBench's
    assert both.metrics["parse_failures"] == 0


def test_likelihood_verdicts_average_both_orders_in_probability_space() -> None:
    # every single order names its first label (a position bias of 2 against a content signal of 1), yet the
    # probabilities averaged over the two orders favour the good response on every item
    from test_referee_likelihood import ForcedLM

    from urpo_kit.models import tiny_tokenizer
    from urpo_kit.referee import HFBackend

    tok = tiny_tokenizer()
    biased = ForcedLM(tok, lambda shown: {label: (2.0 if i == 0 else 0.0) + float(text.startswith("good"))
                                          for i, (label, text) in enumerate(shown)})
    data = preference_set(6)
    data.referee = RefereeSpec(verdict="likelihood")
    result = run_referee_benchmark(data, HFBackend(biased, tok), order="both_orders", sampling=GREEDY, seed=0)
    assert result.metrics["accuracy"] == 1.0 and result.metrics["first_position"] == 1.0
    assert result.metrics["consistency"] == 0.0 and result.metrics["parse_failures"] == 0
    p_good = (1 / (1 + math.exp(-3)) + 1 / (1 + math.exp(1))) / 2
    assert result.metrics["best_probability"] == pytest.approx(p_good)
    for judgment in result.log[0]["judgments"]:  # per order, over candidate indices: the first shown wins
        assert sum(judgment["probabilities"]) == pytest.approx(1.0)
        assert judgment["probabilities"][judgment["shown"][0]] > 0.5


@pytest.mark.parametrize("candidates", [2, 4])
@pytest.mark.parametrize("mode", ["listwise", "pairwise"])
def test_an_oracle_referee_scores_one(candidates: int, mode: str) -> None:
    data = preference_set(12, candidates)
    data.referee = RefereeSpec(mode=mode)
    result = run_referee_benchmark(data, Scripted(oracle), order="both_orders", sampling=GREEDY, seed=1)
    assert result.metrics["accuracy"] == 1.0 and result.metrics["consistency"] == 1.0
    assert result.metrics["reward"] == 1.0 and result.metrics["parse_failures"] == 0
    assert result.subsets == {"s": {"accuracy": 1.0, "n": 12.0}} and result.sections == {}


@pytest.mark.parametrize("candidates", [2, 4])
def test_unparseable_judgments_score_chance_and_are_counted(candidates: int) -> None:
    data = preference_set(10, candidates)
    backend = Scripted(lambda text, shown: "Both responses have merits.")
    result = run_referee_benchmark(data, backend, order="both_orders", sampling=GREEDY, seed=0)
    assert result.metrics["accuracy"] == pytest.approx(1 / candidates)
    assert result.metrics["parse_failures"] == 20 == backend.calls and result.metrics["parse_failure_rate"] == 1.0
    assert "consistency" not in result.metrics and "first_position" not in result.metrics
    assert result.log[0]["judgments"][0]["raw"] == ["Both responses have merits."]


def test_section_scores_weight_subsets_by_rewardbench_counts() -> None:
    accuracy = {"alpacaeval-easy": 1.0, "mt-bench-med": 0.5, "math-prm": 0.25, "hep-go": 0.75, "other": 0.0}
    sections = section_scores(accuracy)
    chat = (1.0 * EXAMPLE_COUNTS["alpacaeval-easy"] + 0.5 * EXAMPLE_COUNTS["mt-bench-med"]) / (100 + 40)
    reasoning = (0.25 * 984 + 0.75 * 164) / (984 + 164)
    assert sections == pytest.approx({"Chat": chat, "Reasoning": reasoning, "score": (chat + reasoning) / 2})
    assert section_scores({"hh": 0.7}) == {}


# ------------------------------------------------------------------------------------------------ lm-eval export
def test_export_is_an_lm_eval_task_scored_by_our_verifier(tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    prepared = prepare_task(ROOT / "tasks" / "arithmetic.yaml", limit=3)
    exported = export_task(prepared, tmp_path / "arith", name="urpo-arith", sampling=GREEDY, stop=["</s>"])
    task = TaskManager(include_path=str(exported.folder), include_defaults=False).load(["urpo-arith"])["tasks"]
    docs = list(task["urpo-arith"].eval_docs)
    episode = prepared.task.episode(prepared.rows.rows[0], row_number=prepared.rows.row_numbers[0])
    assert [docs[0]["system"], docs[0]["user"]] == [m["content"] for m in episode.messages]
    assert docs[0]["gold"] == episode.payload.gold and len(docs) == exported.rows == 3
    config = task["urpo-arith"].config
    assert config.generation_kwargs["until"] == ["</s>"] and config.generation_kwargs["max_gen_toks"] == 8
    scorer = Scorer(prepared.task)
    assert scorer(docs[0], [f"so \\boxed{{{episode.payload.gold}}}"]) == {"accuracy": 1.0, "extracted": 1.0}
    assert scorer(docs[0], ["no idea"]) == {"accuracy": 0.0, "extracted": 0.0}


def test_lm_eval_warnings_are_quiet_during_our_calls_only(caplog: pytest.LogCaptureFixture) -> None:
    """lm-eval warns on every call that an in-memory model skips its loading options; that buried the training log."""
    import logging

    from urpo_kit.eval.lm_bridge import _quiet_lm_eval

    log = logging.getLogger("lm_eval.models.huggingface")
    with caplog.at_level(logging.WARNING):
        with _quiet_lm_eval():
            log.warning("`pretrained` model kwarg is not of type `str`")
            log.error("an error still shows")
        log.warning("after the call")
    assert [r.getMessage() for r in caplog.records] == ["an error still shows", "after the call"]


# ------------------------------------------------------------------------------------------------ end to end
TINY_SUITE = """\
name: tiny
player:
  - task: {tasks}/arithmetic.yaml
    overrides: {{source.n: 2032, source.skip: 2000}}
referee:
  - task: {tasks}/pairs-synthetic.yaml
    name: pairs
    order: both_orders
winrate:
  - task: {tasks}/alpaca-instructions.yaml
    overrides: {{source: {{path: {fixtures}/alpaca_instructions.jsonl}}}}
    reference: "{{{{ output }}}}"
limit: 2
sampling:
  player: {{max_new_tokens: 6}}
  referee: {{max_new_tokens: 6}}
"""


def test_run_suite_end_to_end_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the trainer does mid-training, on any rank: the model comes back in train mode, with no gradients and the
    RNG streams as they were; the run folder holds every report and per-sample log."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("LOCAL_RANK", "1")  # lm-eval returns nothing off local rank 0 unless run_suite sees to it
    suite = load_suite(write(tmp_path / "tiny.yaml", TINY_SUITE.format(tasks=ROOT / "tasks",
                                                                         fixtures=ROOT / "tests" / "fixtures" / "hub")))
    model, tokenizer = tiny_model()
    model.train()
    torch.manual_seed(123)
    random.seed(5)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(123)
    random.seed(5)
    import lm_eval  # noqa: F401  (these imports set process-wide variables once; a run must set none of its own)
    import sklearn  # noqa: F401

    environment = dict(os.environ)
    metrics = run_suite(suite, model, tokenizer, tmp_path / "run", progress=False)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    assert model.training and all(p.grad is None for p in model.parameters())
    assert dict(os.environ) == environment
    for key in ("player/arithmetic/accuracy", "player/arithmetic/extracted", "referee/pairs/accuracy",
                "referee/pairs/random_order_accuracy", "referee/pairs/parse_failure_rate",
                "winrate/alpaca-instructions/win_rate", "eval/seconds"):
        assert isinstance(metrics[key], float), key
    run = tmp_path / "run"
    for name in ("results.json", "report.md", "charts.png", "samples_urpo-arithmetic.jsonl", "referee_pairs.jsonl",
                 "winrate_alpaca-instructions.jsonl", "lm_eval_tasks/arithmetic/task.yaml"):
        assert (run / name).is_file(), name
    results = load_run(run)
    assert results["metrics"] == pytest.approx(metrics, nan_ok=True)
    for role, key in (("player", "player/arithmetic/accuracy"), ("referee", "referee/pairs/accuracy"),
                      ("winrate", "winrate/alpaca-instructions/win_rate")):
        scores = results[role][0]["row_scores"]  # per-row scores, and the interval computed from them
        assert len(scores) == 2 and sum(scores.values()) / 2 == pytest.approx(metrics[key])
        assert (metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]) == pytest.approx(interval(list(scores.values())))
    assert results["versions"]["lm_eval"] == "0.4.13" and len(results["player"][0]["data_sha256"]) == 64
    assert results["player"][0]["lm_eval"]["n-samples"]["urpo-arithmetic"]["effective"] == 2
    report = (run / "report.md").read_text()
    assert "AlpacaEval-protocol, judge=self (" in report and "EXAMPLE_COUNTS" in report
    assert len((run / "samples_urpo-arithmetic.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "hf").exists()  # lm-eval's json dataset cache stays inside the run folder


def test_compare_two_runs(tmp_path: Path) -> None:
    def run(name: str, accuracy: float) -> Path:
        payload = {"suite": {"name": "s"}, "model": {"name": name},
                   "metrics": {"player/a/accuracy": accuracy, "referee/b/accuracy": 0.5, "eval/seconds": 3.0}}
        write(tmp_path / name / "results.json", json.dumps(payload))
        return tmp_path / name

    rows = compare_runs(run("before", 0.25), run("after", 0.5), tmp_path / "cmp")
    assert ["player/a/accuracy", "0.250", "0.500", "0.250", ""] in rows
    assert (tmp_path / "cmp" / "compare.png").is_file()
    assert "| player/a/accuracy | 0.250 | 0.500 | 0.250 |" in (tmp_path / "cmp" / "compare.md").read_text()


def test_row_scores_read_lm_evals_per_document_metric() -> None:
    samples = {"gsm8k": [{"doc_id": d, "filter": f, "exact_match": float(d == 1 or f == "flexible"), "bleu": ("a", "b")}
                         for d in (0, 1) for f in ("strict", "flexible")]}
    assert row_scores(samples, "exact_match,strict") == {"0": 0.0, "1": 1.0}
    assert row_scores({**samples, "other": samples["gsm8k"]}, "exact_match,flexible") == {
        "gsm8k/0": 1.0, "gsm8k/1": 1.0, "other/0": 1.0, "other/1": 1.0}
    assert row_scores(samples, "bleu,strict") == {}  # a corpus-level metric has no per-row score


def payload(accuracy: list[float], *, sha: str = "d1", win: float | None = None) -> dict:
    """A results.json payload with one player benchmark scored per row (and a win rate without row scores)."""
    rows = {str(i): s for i, s in enumerate(accuracy)}
    low, high = interval(accuracy)
    metrics = {"accuracy": sum(accuracy) / len(accuracy), "accuracy_ci_low": low, "accuracy_ci_high": high}
    out = {"suite": {"name": "s"}, "model": {"name": "m", "parameters": 10, "dtype": "float32"}, "started": "now",
           "seconds": 1.0, "versions": {}, "referee": [], "winrate": [],
           "metrics": {f"player/p/{k}": v for k, v in metrics.items()},
           "player": [{"name": "p", "source": "rows", "rows": len(rows), "metrics": metrics, "row_scores": rows,
                       "data_sha256": sha, "samples_files": [], "seconds": 1.0}]}
    if win is not None:
        out["metrics"]["winrate/w/win_rate"] = win
        out["winrate"] = [{"name": "w", "label": "x", "metrics": {"win_rate": win, "n": 2.0, "parse_failures": 0.0,
                          "answer_chars": 1.0, "reference_chars": 1.0}, "log_file": "w.jsonl", "seconds": 1.0}]
    return out


def test_report_shows_each_accuracy_with_its_interval() -> None:
    text = report_markdown(payload([1.0] * 8 + [0.0] * 24, win=0.5))
    assert "| p | rows | 32 | 0.250 [0.133, 0.421] |" in text and "Wilson score interval" in text
    # the summary table first: the same table as training's held-out table (console and model card)
    summary = text.split("## Summary\n\n")[1].split("\n\n")[0]
    assert summary == ("| metric | value [95% CI] |\n|---|---|\n| player/p/accuracy | 0.250 [0.133, 0.421] |\n"
                       "| winrate/w/win_rate | 0.500 |")


def test_compare_gives_the_paired_interval_of_each_change(tmp_path: Path) -> None:
    before = [float(i % 2) for i in range(64)]
    after = [1.0 if i % 4 == 0 else s for i, s in enumerate(before)]
    write(tmp_path / "a" / "results.json", json.dumps(payload(before, win=0.5)))
    write(tmp_path / "b" / "results.json", json.dumps(payload(after, win=0.75)))
    write(tmp_path / "c" / "results.json", json.dumps(payload(after, sha="d2")))
    rows = {r[0]: r for r in compare_runs(tmp_path / "a", tmp_path / "b", tmp_path / "ab")}
    change = paired_bootstrap({str(i): s for i, s in enumerate(before)}, {str(i): s for i, s in enumerate(after)})
    assert change is not None and change.lo > 0
    assert rows["player/p/accuracy"] == ["player/p/accuracy", "0.500 [0.381, 0.619]", "0.750 [0.632, 0.840]",
                                         "0.250", change.bracket]
    assert "player/p/accuracy_ci_low" not in rows  # shown in the brackets, not as a metric of its own
    assert rows["winrate/w/win_rate"][1:] == ["0.500", "0.750", "0.250", "not given: no row scores"]
    text = (tmp_path / "ab" / "compare.md").read_text()
    assert "| B - A | 95% CI (paired) |" in text and change.bracket in text and "percentile bootstrap" in text
    unpaired = {r[0]: r for r in compare_runs(tmp_path / "a", tmp_path / "c", tmp_path / "ac")}
    assert unpaired["player/p/accuracy"][4] == "not given: different rows (unpaired)"


def test_cli_eval_then_compare(tmp_path: Path) -> None:
    suite = write(tmp_path / "s.yaml", f"name: s\nreferee:\n  - task: {ROOT / 'tasks' / 'pairs-synthetic.yaml'}\n"
                                       "limit: 2\nsampling: {referee: {max_new_tokens: 4}}\n")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(suite), "--model", "tiny:llama", "--output", str(tmp_path / "r"),
                                 "--no-progress", "seed=3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert load_run(tmp_path / "r")["suite"]["seed"] == 3
    assert "referee/pairs-synthetic/accuracy" in result.output
    result = runner.invoke(app, ["eval", "--compare", str(tmp_path / "r"), str(tmp_path / "r"), "--output",
                                 str(tmp_path / "c")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "compare.md").is_file()
    result = runner.invoke(app, ["eval", "--compare", str(tmp_path / "r")])
    assert result.exit_code == 2 and "exactly two run folders" in result.output


def test_precision_float32_reads_upcast_and_puts_the_weights_back(tmp_path: Path) -> None:
    """`precision: float32` reads a bfloat16 model as its float32 copy would read (the same label probabilities;
    results.json says float32) and leaves it as found: the same tensors, bit for bit, LoRA adapters untouched."""
    from peft import LoraConfig, get_peft_model

    from urpo_kit.eval.runner import read_precision

    suite_text = f"""
name: precise
referee:
  - task: {ROOT / "tasks"}/pairs-synthetic.yaml
    name: pairs
    order: both_orders
    overrides: {{referee.verdict: likelihood}}
limit: 3
precision: float32
"""
    suite = load_suite(write(tmp_path / "s.yaml", suite_text))

    def probabilities(run: str) -> list:
        lines = (tmp_path / run / "referee_pairs.jsonl").read_text().splitlines()
        return [json.loads(line)["judgments"] for line in lines]

    model, tokenizer = tiny_model(seed=3)
    model = get_peft_model(model.to(torch.bfloat16), LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    before = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    with read_precision(model, "float32"):  # the float32 copy's reading (the nested upcast finds nothing to do)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        run_suite(suite, model, tokenizer, tmp_path / "copy", progress=False)
    run_suite(suite, model, tokenizer, tmp_path / "upcast", progress=False)
    run_suite(suite.model_copy(update={"precision": "model"}), model, tokenizer, tmp_path / "bf16", progress=False)
    for name, (param, value) in before.items():
        now = dict(model.named_parameters())[name]
        assert now is param and now.dtype == value.dtype and torch.equal(now, value), name
    assert load_run(tmp_path / "upcast")["model"]["dtype"] == "float32"
    assert load_run(tmp_path / "bf16")["model"]["dtype"] == "bfloat16"
    assert probabilities("upcast") == probabilities("copy") != probabilities("bf16")
