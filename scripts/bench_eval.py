"""Agreement and overhead of `urpo-kit eval` against lm-eval itself, on our GSM8K task.

The task is exported and run through `run_suite`, then the exported task folder is run with `lm_eval.simple_evaluate`
directly, on the same in-memory model, alternating `--repeats` times. Prints both scores, whether every generation
and per-sample score matched, and the wall-time ratio (median urpo-kit / median lm-eval; target at most 1.05).

    python scripts/bench_eval.py --limit 20 --max-new-tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lm_eval_agreement import lm_eval_agreement
from urpo_kit.models import load_model, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
console = Console()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/gsm8k/train.jsonl",
                        help="GSM8K-format jsonl (question, answer), read in place")
    parser.add_argument("--task", type=Path, default=ROOT / "tasks/gsm8k.yaml")
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    if not args.data.is_file():
        console.print(f"[yellow]{args.data} is not here; nothing to compare[/yellow]")
        return 1
    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        result = lm_eval_agreement(args.task, {"source": {"path": str(args.data.resolve())}}, model, tokenizer,
                                   args.out or Path(tmp), limit=args.limit, max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, repeats=args.repeats)
    table = Table("path", "accuracy", "seconds per run", title=f"{args.task.name}: {args.limit} rows, "
                                                                 f"{args.max_new_tokens} new tokens, {args.model}")
    table.add_row("urpo-kit eval (run_suite)", f"{result.ours:.3f}", ", ".join(f"{s:.1f}" for s in result.ours_seconds))
    table.add_row("lm_eval.simple_evaluate", f"{result.direct:.3f}",
                  ", ".join(f"{s:.1f}" for s in result.direct_seconds))
    console.print(table)
    console.print(f"same score: {result.ours == result.direct}; same generations and per-sample scores: "
                  f"{result.same_samples}; wall-time ratio {result.ratio:.3f} (target <= 1.05)")
    print(json.dumps({"ours": result.ours, "direct": result.direct, "same_samples": result.same_samples,
                      "ours_seconds": result.ours_seconds, "direct_seconds": result.direct_seconds,
                      "ratio": result.ratio}))
    return 0 if result.ours == result.direct and result.same_samples else 1


if __name__ == "__main__":
    sys.exit(main())
