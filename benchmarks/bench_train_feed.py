"""Training throughput with the augmented window feed against the same model fed from memory.

    .venv/bin/python benchmarks/bench_train_feed.py [--steps 9] [--threads 1]

The model is the small preset (configs/small.yaml: 4 layers, 256 wide, context 512, batch 16)
on the Bach chorales. Three feeds give it the same batches:

- ``memory``: the batches made beforehand and held as one tensor (the bare-loop reference),
- ``dataset, 0 workers``: ``WindowDataset`` with every augmentation on, in the training process,
- ``dataset, 1 worker``: the same through one DataLoader worker.

The feeds take turns, one training step (forward, backward, clipping, AdamW) each and in a
rotating order, so that a change in the machine's load falls on all of them alike; the first step of each (which starts
the worker) is not timed. Reported: tokens/s over ``--steps`` timed steps, the ratio to
``memory`` (target: within 10%, a ratio of at least 0.9), the same ratio from median step
times (steadier on a busy machine), and the time to make one batch in the training process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.losses import next_token_cross_entropy
from aurl.models import Transformer
from aurl.tokens import Tokenizer
from aurl.train.feed import BatchFeed
from aurl.train.lm import training_windows
from aurl.train.task import make_optimizer
from common import RESULTS_DIR, machine_info, machine_markdown, median, write_results

PACKAGES = ("aurl", "torch", "numpy")
SMALL = Path(__file__).parents[1] / "configs" / "small.yaml"
AUGMENT = [  # every augmentation on, half of the time each, on top of transposition
    "data.augment.tempo.p=0.5", "data.augment.velocity.p=0.5", "data.augment.instruments.p=0.5",
    "data.augment.humanize.p=0.5", "data.augment.humanize.swing_steps=2",
]  # fmt: skip
TARGET_RATIO = 0.9


def train_step(model, optimizer, get_batch, step: int) -> tuple[float, int]:
    """One training step on the batch for ``step``; returns (seconds, tokens)."""
    t0 = time.perf_counter()
    x, y = get_batch(step)
    loss = next_token_cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return time.perf_counter() - t0, x.numel()


def feed_ms_per_batch(feed: BatchFeed, first: int, batches: int) -> float:
    t0 = time.perf_counter()
    for step in range(first, first + batches):
        feed(step)
    return (time.perf_counter() - t0) / batches * 1000


def render(r: dict) -> str:
    """The Markdown report of a results dictionary (as written to the JSON file)."""
    m, feeds = r["model"], list(r["tokens_per_s"])
    ok = all(v >= r["target_ratio"] for v in r["ratio_to_memory"].values())
    rows = "\n".join(
        f"| {k} | {r['tokens_per_s'][k]:,.0f} | {r['ratio_to_memory'][k]:.3f} | "
        f"{r['ratio_of_median_steps'][k]:.3f} |"
        for k in feeds
    )
    feed_ms, step_ms = r["feed_ms_per_batch_in_process"], r["train_step_ms_from_memory_median"]
    note = f"\n{r['note']}\n" if r.get("note") else ""
    return f"""# Training feed: augmented windows vs batches in memory

The small model ({m["parameters"]:,} parameters: {m["n_layer"]} layers, {m["n_embd"]} wide,
context {m["seq_len"]}, batch {m["batch_size"]}) on the Bach chorales, {r["threads"]} torch
thread(s), {r["timed_steps_per_feed"]} timed training steps per feed, the feeds taking turns
step by step in a rotating order. The dataset feeds add tempo, velocity, instrument and
humanize augmentation at p = 0.5 each to transposition.

| feed | tokens/s | ratio to memory | ratio of median step times |
|---|---:|---:|---:|
{rows}

Making one batch of {m["batch_size"]} augmented windows in the training process takes
{feed_ms:.1f} ms, {feed_ms / step_ms:.2%} of a training step ({step_ms:,.0f} ms, median, fed
from memory). Target: every ratio at least {r["target_ratio"]} ({"met" if ok else "not met"}).
{note}
{machine_markdown(r["machine"])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=9, help="timed steps per feed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in training")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--note", default="", help="a line about the conditions, for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_config(SMALL, AUGMENT)
    tokenizer = Tokenizer(config.tokenizer)
    dataset = prepare(resolve_source(config.data.source, 2, False), tokenizer, progress=False)
    windows = training_windows(config, tokenizer.vocab, [Shard(dataset.split("train"))])
    batch = config.train.batch_size
    torch.manual_seed(0)
    model_cfg = config.model.model_copy(update={"vocab_size": tokenizer.vocab_size})
    model = Transformer(model_cfg)
    optimizer = make_optimizer(model, config.train)
    model.train()

    total = args.steps + 1
    in_process = BatchFeed(windows, batch, workers=0)
    memory_x = torch.stack([in_process(s)[0] for s in range(total)])  # (steps, B, T)
    memory_y = torch.stack([in_process(s)[1] for s in range(total)])
    feeds = {
        "memory": lambda step: (memory_x[step], memory_y[step]),
        "dataset, 0 workers": in_process,
        "dataset, 1 worker": BatchFeed(windows, batch, workers=1),
    }
    # Round robin, one step of each feed in turn, so that a change in the machine's load
    # falls on all of them alike. Step 0 of each feed (starting the worker) is not timed.
    seconds: dict[str, list[float]] = {name: [] for name in feeds}
    tokens = 0
    for i in range(args.steps + 1):
        names = list(feeds)
        for name in names[i % 3 :] + names[: i % 3]:  # each feed goes first in turn
            feed = feeds[name]
            t, tokens = train_step(model, optimizer, feed, i)  # the same batches for all
            if i:
                seconds[name].append(t)
        print(f"step {i}: " + ", ".join(f"{n} {s[-1]:.2f} s" for n, s in seconds.items() if s))
    rates = {name: tokens * len(s) / sum(s) for name, s in seconds.items()}
    ratios = {name: rates[name] / rates["memory"] for name in feeds}
    median_ratios = {name: median(seconds["memory"]) / median(s) for name, s in seconds.items()}
    feed_ms = feed_ms_per_batch(BatchFeed(windows, batch, workers=0), 10_000, 20)
    step_ms = median(seconds["memory"]) * 1000

    info = machine_info(PACKAGES)
    results = {
        "model": {"n_layer": model_cfg.n_layer, "n_embd": model_cfg.n_embd,
                  "seq_len": config.data.seq_len, "batch_size": batch,
                  "parameters": model.num_params()},
        "augment": AUGMENT, "timed_steps_per_feed": args.steps, "threads": args.threads,
        "step_seconds": {k: [round(v, 4) for v in vs] for k, vs in seconds.items()},
        "tokens_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_memory": {k: round(v, 3) for k, v in ratios.items()},
        "ratio_of_median_steps": {k: round(v, 3) for k, v in median_ratios.items()},
        "feed_ms_per_batch_in_process": round(feed_ms, 2),
        "train_step_ms_from_memory_median": round(step_ms, 1),
        "target_ratio": TARGET_RATIO, "note": args.note, "machine": info,
    }  # fmt: skip
    markdown = render(results)
    write_results("train_feed", results, markdown, args.out or RESULTS_DIR)
    print(markdown)


if __name__ == "__main__":
    main()
