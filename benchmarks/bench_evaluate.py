"""Time `aurl evaluate` end to end: one fresh process, as a user runs it.

    .venv/bin/python benchmarks/bench_evaluate.py [--model PATH] [--num 100] [--threads 2]

The command runs in a child process (imports included) and writes its report to a
temporary folder; the stage times come from that report's ``timing`` section, the total from
the wall clock around the process. The target: 100 samples of 8 bars with the shipped model
in under a minute on the 2-core CPU machine. The dataset is prepared once before timing (it
is cached, as it is after a user's first run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_info, machine_markdown, write_results

PACKAGES = ("aurl", "torch", "numpy", "matplotlib")
TARGET_S = 60.0
RUN = "import sys; from aurl.evaluate.command import evaluate; sys.exit(evaluate())"


def run_once(args: list[str], threads: int) -> tuple[float, dict]:
    """Run the command in a fresh process; return its wall time and its report."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "evaluation"
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", RUN, *args, "--out", str(out), "--quiet"], check=True, env=env
        )
        wall = time.perf_counter() - t0
        return wall, json.loads((out / "report.json").read_text())


def main() -> None:
    from aurl.paths import SHIPPED_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: shipped)")
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--note", default="", help="a line about the model or the machine")
    a = parser.parse_args()
    model = Path(a.model) if a.model else SHIPPED_MODEL
    if not (model / "config.json").is_file() and not (model / "model" / "config.json").is_file():
        sys.exit(f"{model}: no model there; pass --model")
    args = [
        "--model",
        str(model),
        "--num",
        str(a.num),
        "--bars",
        str(a.bars),
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    run_once([*args[:2], "--num", "2", "--bars", "1", "--no-plots"], a.threads)  # warm caches
    load_before = round(os.getloadavg()[0], 2)
    wall, report = run_once(args, a.threads)
    import torch

    torch.set_num_threads(a.threads)
    info = machine_info(PACKAGES) | {"load_average_1min_at_start": load_before}
    timing = report["timing"]
    gen = report["generation"]
    stages = {k: v for k, v in timing.items() if k != "total"}
    data = {
        "model": str(model),
        "parameters": report["model"]["parameters"],
        "num": a.num,
        "bars": a.bars,
        "threads": a.threads,
        "wall_s": round(wall, 2),
        "target_s": TARGET_S,
        "met": wall < TARGET_S,
        "stages_s": stages,
        "generated_tokens": gen["tokens"],
        "validity_tokens": report["validity"]["tokens"],
        "generation_tokens_per_s": round(gen["tokens"] / max(timing["generate"], 1e-9), 1),
        "truncated_samples": gen["truncated"],
        "machine": info,
        "note": a.note,
    }
    rows = [f"| {k} | {v:.2f} | {100 * v / wall:.0f}% |" for k, v in stages.items()]
    startup = wall - timing["total"]
    md = [
        "# `aurl evaluate` end to end (CPU)",
        "",
        f"Model: `{model}` ({data['parameters']:,} parameters). {a.num} samples of {a.bars} "
        f"bars, seed 0, {a.threads} torch threads, figures on. One fresh process; the dataset "
        "was already cached." + (f" {a.note}" if a.note else ""),
        "",
        f"**Total wall time: {wall:.1f} s** (target < {TARGET_S:.0f} s: "
        f"{'met' if data['met'] else 'NOT met'}).",
        "",
        "| stage | s | share |",
        "|---|---:|---:|",
        *rows,
        f"| process start and imports | {startup:.2f} | {100 * startup / wall:.0f}% |",
        "",
        f"Sampling: {gen['tokens']:,} tokens for the compared samples at "
        f"{data['generation_tokens_per_s']:,.0f} tokens/s, plus {data['validity_tokens']:,} "
        f"tokens for the validity check; {gen['truncated']} samples hit the token cap "
        f"({gen['token_budget']['hard']}; the first pass of each batch stops at "
        f"{gen['token_budget']['soft']} and only unfinished samples go on). Everything but the model's own work (test-split likelihood, "
        "validity and samples) takes "
        f"{sum(v for k, v in stages.items() if k not in ('model_nll', 'validity', 'generate')):.1f} s.",
        "",
        f"The 1-minute load average was {load_before} when the run started and "
        f"{info['load_average_1min']} at the end; a busy machine slows every stage.",
        "",
        machine_markdown(info),
    ]
    kwargs = {"out_dir": a.out} if a.out else {}
    write_results("evaluate", data, "\n".join(md), **kwargs)


if __name__ == "__main__":
    main()
