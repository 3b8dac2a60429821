"""Two training steps on two CPU processes (gloo) with the tiny model give the same rewards and advantages as a
single-process run on the same data.

Launcher: `accelerate launch --cpu --num_processes 2` starts ONE process unless MPI is set up (accelerate's simple
launcher only fans out through mpirun), so the test uses `accelerate launch --multi_gpu --num_processes 2`, which
starts two processes through torchrun even without a GPU; the trainer's `use_cpu` then makes accelerate choose
MULTI_CPU with gloo.

Sampled completions cannot be compared across process counts (each process seeds its own sampler), so both runs
script the player's completions through TRL's `rollout_func`: completion k of a prompt at step s is a fixed pick from
a short list. Everything after generation is the real thing: our reward functions, the self-referee generating with
the tiny model (greedy) through TRL's unwrap helper under DDP, TRL's reward gathering and group normalisation, the
loss and the optimizer step. Each process logs the rewards it computed to its own file; TRL's completion logs
(`log_completions`) hold the gathered rewards and the advantages of each step.

This file is also the worker that both runs launch (`python tests/test_train_distributed.py RECIPE OUT`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ["an apple", "xyz", "1] > [2]", "2] > [1]", "qq", "a dog"]  # verdicts continue the prefill `Ranking: [`


def scripted_rollout(prompts: list, trainer) -> dict:
    """Completion k of each prompt at this step, as token ids ending with eos."""
    from urpo_kit.recast import stable_seed

    tokenizer = trainer.processing_class
    prompt_ids, completion_ids, seen = [], [], {}
    for prompt in prompts:
        text = json.dumps(prompt, sort_keys=True)
        k = seen[text] = seen.get(text, -1) + 1
        prompt_ids.append(tokenizer(prompt)["input_ids"])  # text prompts (trainer.trl_record), as TRL tokenizes them
        pick = SCRIPT[stable_seed(text, k, trainer.state.global_step) % len(SCRIPT)]
        completion_ids.append(tokenizer(pick, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


class Recorded:
    """A reward function that also writes each reward it returns to this process's file."""

    def __init__(self, fn, path: Path, rank: int):
        self.fn, self.path, self.rank = fn, path, rank
        self.__name__ = fn.__name__

    def __call__(self, **kwargs):
        out = self.fn(**kwargs)
        step = kwargs["trainer_state"].global_step + 1
        with self.path.open("a") as f:
            for i, reward in enumerate(out):
                if reward is not None:
                    position = json.loads(kwargs["episode"][i])["position"]
                    text = kwargs["completions"][i]  # text prompts give text completions
                    f.write(json.dumps({"rank": self.rank, "step": step, "position": position, "completion": text,
                                        "kind": self.fn.__name__, "reward": reward}) + "\n")
        return out


def worker(recipe_path: str, out: str) -> None:
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    import trl

    import urpo_kit.train.trainer as assembly
    from urpo_kit.config.loader import load_recipe

    rank = int(os.environ.get("RANK", "0"))
    out_dir = Path(out)
    rewards_file = out_dir / f"rewards.rank{rank}.jsonl"

    class Scripted(trl.GRPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, rollout_func=scripted_rollout, **kwargs)

    trl.GRPOTrainer = Scripted
    build = assembly.reward_functions
    assembly.reward_functions = lambda *a, **k: [Recorded(fn, rewards_file, rank) for fn in build(*a, **k)]
    recipe = load_recipe(recipe_path, [f"output_dir={out_dir / 'run'}"])
    run = assembly.build_run(recipe, progress=False, log_completions=True, num_completions_to_print=0)
    run.trainer.train()
    (out_dir / f"calls.rank{rank}.json").write_text(json.dumps({"referee_calls": run.referee.backend.calls}))


# ------------------------------------------------------------------------------------------------ the test
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_worker(command: list[str], recipe: Path, out: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*command, __file__, str(recipe), str(out)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def rewards(out: Path) -> dict[tuple, float]:
    """(step, position, k-th completion of the group, kind) -> reward, over every process's file."""
    table, seen = {}, {}
    for path in sorted(out.glob("rewards.rank*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            k = seen[(r["step"], r["position"], r["kind"])] = seen.get((r["step"], r["position"], r["kind"]), -1) + 1
            table[(r["step"], r["position"], k, r["kind"], r["completion"])] = r["reward"]
    return table


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path):
    import pandas as pd
    from test_train import write_tasks

    recipe = write_tasks(tmp_path / "tasks")
    text = recipe.read_text().replace("steps: 4", "steps: 2")
    recipe.write_text(text)
    one, two = tmp_path / "one", tmp_path / "two"
    run_worker([sys.executable], recipe, one)
    run_worker([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port())], recipe, two)

    # each process scored only its own half of every step, in whole groups
    per_rank = [{(json.loads(line)["step"], json.loads(line)["position"])
                 for line in (two / f"rewards.rank{r}.jsonl").read_text().splitlines()} for r in (0, 1)]
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]
    assert rewards(one) == rewards(two)
    # every rank called the self-referee once per step, with or without open-ended groups of its own
    assert [json.loads((two / f"calls.rank{r}.json").read_text())["referee_calls"] for r in (0, 1)] == [2, 2]

    for step in (1, 2):
        name = f"completions/completions_{step:05d}.parquet"
        a, b = pd.read_parquet(one / "run" / name), pd.read_parquet(two / "run" / name)
        assert list(a["completion"].astype(str)) == list(b["completion"].astype(str))
        for column in ("verifiable", "preference", "open_ended", "advantage"):
            pd.testing.assert_series_equal(a[column], b[column], check_exact=False, atol=1e-5)
        assert a["advantage"].abs().sum() > 0  # the scripted completions do give the groups some signal


if __name__ == "__main__":
    worker(*sys.argv[1:3])
