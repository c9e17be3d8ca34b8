"""The trainer against a bare loop, and bf16 against fp32, on the same model and batches.

    .venv/bin/python benchmarks/bench_train.py [--rounds 3] [--steps 5] [--threads 2]

The model is the small preset (configs/small.yaml: 4 layers, 256 wide, context 512, batch 16)
and the batches are made beforehand from the chorales and held in memory, so only the
training step is timed. Three ways take turns, ``--steps`` steps each per round:

- ``bare loop``: forward, cross-entropy, backward, clipping, AdamW (nanoGPT's inner loop),
- ``trainer, fp32``: :func:`aurl.train.loop.train_loop` with its defaults (anomaly checks,
  TensorBoard and JSONL logging every step, the Task interface, the PAD-weighted loss),
- ``trainer, bf16``: the same with ``train.precision=bf16`` (autocast on the CPU).

Reported: the median step time of each, and the ratio of the bare loop's median step to each
trainer's (target for fp32: at least 0.9). The trainer's step times come from its own
per-step tokens/s records; a first round of all three is not counted (the process warms
up), nor is the first step of every round (optimizer state allocation).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.losses import next_token_cross_entropy
from aurl.models import build_model
from aurl.tokens import PAD, Tokenizer
from aurl.train.feed import BatchFeed
from aurl.train.lm import LMTask, training_windows
from aurl.train.loop import train_loop
from aurl.train.task import make_optimizer
from common import RESULTS_DIR, machine_info, machine_markdown, median, write_results

PACKAGES = ("aurl", "torch", "numpy")
SMALL = Path(__file__).parents[1] / "configs" / "small.yaml"
TARGET_RATIO = 0.9


def bare_steps(model, cfg, batches) -> list[float]:
    """Seconds of each step of the plainest loop over ``batches``."""
    optimizer, times = make_optimizer(model, cfg), []
    model.train()
    for x, y in batches:
        t0 = time.perf_counter()
        loss = next_token_cross_entropy(model(x), y, PAD)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return times


def trainer_steps(model, cfg, batches, tokenizer, precision: str) -> list[float]:
    """Seconds of each step of ``train_loop`` over ``batches`` (from its own records)."""
    cfg = cfg.model_copy(update={"max_steps": len(batches), "log_every": 1, "precision": precision,
                                 "eval_every": 10**6, "checkpoint_every": 10**6})  # fmt: skip
    task = LMTask(model, cfg, torch.device("cpu"), lambda m: {"val_loss": 0.0},
                  lambda metrics, progress: None, tokenizer)  # fmt: skip
    task.preview = lambda: None
    with tempfile.TemporaryDirectory() as run:
        train_loop(task, cfg, Path(run), lambda step, micro: batches[step], torch.device("cpu"),
                   progress=False)  # fmt: skip
        lines = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    tokens = batches[0][0].numel()
    return [tokens / r["tokens_per_s"] for r in lines if "tokens_per_s" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per way per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(SMALL)
    tokenizer = Tokenizer(config.tokenizer)
    dataset = prepare(resolve_source("bach", 2, False), tokenizer, progress=False)
    windows = training_windows(config, tokenizer.vocab, [Shard(dataset.split("train"))])
    feed = BatchFeed(windows, config.train.batch_size)
    batches = [feed(s) for s in range(args.steps)]
    torch.manual_seed(0)
    model = build_model(config.model.model_copy(update={"vocab_size": tokenizer.vocab_size}))
    cfg = config.train
    ways = {
        "bare loop": lambda: bare_steps(model, cfg, batches),
        "trainer, fp32": lambda: trainer_steps(model, cfg, batches, tokenizer, "fp32"),
        "trainer, bf16": lambda: trainer_steps(model, cfg, batches, tokenizer, "bf16"),
    }
    for way in ways.values():  # a round not counted: the process warms up
        way()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for r in range(args.rounds):
        names = list(ways)
        for name in names[r % 3 :] + names[: r % 3]:  # each goes first in turn
            seconds[name] += ways[name]()[1:]
            print(f"round {r}: {name} median {median(seconds[name]):.3f} s/step")
    med = {k: median(v) for k, v in seconds.items()}
    tokens = batches[0][0].numel()
    results = {
        "model": {"parameters": sum(p.numel() for p in model.parameters()),
                  "batch_size": cfg.batch_size, "seq_len": config.data.seq_len},
        "rounds": args.rounds, "steps_per_round": args.steps, "threads": args.threads,
        "step_seconds": {k: [round(x, 4) for x in v] for k, v in seconds.items()},
        "median_step_s": {k: round(v, 4) for k, v in med.items()},
        "tokens_per_s": {k: round(tokens / v, 1) for k, v in med.items()},
        "ratio_to_bare": {k: round(med["bare loop"] / v, 3) for k, v in med.items()},
        "target_ratio": TARGET_RATIO, "machine": machine_info(PACKAGES),
    }  # fmt: skip
    rows = "\n".join(
        f"| {k} | {results['median_step_s'][k]:.3f} | {results['tokens_per_s'][k]:,.0f} | "
        f"{results['ratio_to_bare'][k]:.3f} |"
        for k in ways
    )
    markdown = f"""# Training: the trainer vs a bare loop, bf16 vs fp32

The small model ({results["model"]["parameters"]:,} parameters, batch {cfg.batch_size} x
{config.data.seq_len} tokens) on batches held in memory, {args.threads} torch threads,
{args.rounds} rounds of {args.steps} steps per way taking turns, after one round not counted
(nor the first step of each round). Target: the trainer at least {TARGET_RATIO}x the bare loop.

| way | median s/step | tokens/s | ratio to the bare loop |
|---|---|---|---|
{rows}

{machine_markdown(results["machine"])}
"""
    write_results("train", results, markdown, args.out or RESULTS_DIR)
    print(markdown)


if __name__ == "__main__":
    main()
