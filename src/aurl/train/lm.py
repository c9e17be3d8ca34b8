"""The language-model recipe: corpus -> dataset -> transformer -> train_loop -> model folder."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from aurl.config import ConfigError, RunConfig, dump_config, load_config
from aurl.data.prepare import Dataset, prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.data.windows import WeightedWindows, WindowDataset
from aurl.device import pick_device
from aurl.evaluate.likelihood import nll_per_token
from aurl.fileio import atomic_write_text
from aurl.models import Transformer, load_model, save_model
from aurl.tokens import Tokenizer, Vocabulary
from aurl.train.checkpoint import CHECKPOINT
from aurl.train.loop import LoopState, train_loop

RUN_CONFIG = "config.yaml"
MODEL_DIR = "model"


class BatchFeed:
    """Batch for step ``s`` = windows ``s*B .. s*B+B-1`` of the dataset, optionally from
    DataLoader workers. Steps must be asked for in order (a jump restarts the workers).

    Args:
        dataset: the windows (each a pure function of its index, so any worker may make it).
        batch_size: windows per step.
        workers: DataLoader worker processes (0: in this process).
        context: how workers start ("fork", "spawn", "forkserver"; None: the platform's
            default).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, workers: int,
                 context: str | None = None):  # fmt: skip
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.context = context
        self._iter, self._next = None, None

    def __call__(self, step: int):
        if self.workers == 0:
            items = [self.dataset[step * self.batch_size + i] for i in range(self.batch_size)]
            return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        if self._iter is None or step != self._next:
            sampler = range(step * self.batch_size, 1 << 62)
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, sampler=sampler,
                num_workers=self.workers, persistent_workers=True,
                multiprocessing_context=self.context,
            )  # fmt: skip
            self._iter = iter(loader)
        self._next = step + 1
        return next(self._iter)


def training_windows(config: RunConfig, vocab: Vocabulary,
                     shards: list[Shard]) -> torch.utils.data.Dataset:  # fmt: skip
    """The training windows of ``config`` over the train shards of its corpora, in the order
    of ``config.data.weighted_sources()``; several corpora are drawn by their weights."""
    data, seed = config.data, config.train.seed
    windows = [
        WindowDataset(shard, vocab, data.seq_len, seed, data.transpose, augment=data.augment,
                      batch_size=config.train.batch_size, curriculum=data.curriculum)
        for shard in shards
    ]  # fmt: skip
    if len(windows) == 1:
        return windows[0]
    return WeightedWindows(windows, [s.weight for s in data.weighted_sources()], seed)


def train_run(config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
              dataset: Dataset | None = None) -> dict:  # fmt: skip
    """Train a model as ``config`` says into ``run_dir``; return the exported model's meta."""
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise ConfigError(f"{run_dir}: no checkpoint to resume from")
        config = load_config(run_dir / RUN_CONFIG)
    elif (run_dir / CHECKPOINT).exists():
        raise ConfigError(
            f"{run_dir}: a run is already there; pass --resume or choose another --name"
        )
    cfg = config.train
    if config.data.seq_len > config.model.max_seq_len:
        raise ConfigError(
            f"data.seq_len ({config.data.seq_len}) exceeds model.max_seq_len ({config.model.max_seq_len})"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        device = pick_device(cfg.device)
    except ValueError as e:
        raise ConfigError(f"train.device: {e}") from None
    tokenizer = Tokenizer(config.tokenizer)
    data = config.data

    def prepared(name: str) -> Dataset:
        return prepare(resolve_source(name, data.workers, progress), tokenizer,
                       workers=data.workers, progress=progress, strict=data.strict,
                       preprocessing=data.preprocess)  # fmt: skip

    if dataset is None:
        dataset = prepared(data.source)
    extra = [prepared(s.source) for s in data.weighted_sources()[1:]]
    train_shards = [Shard(d.split("train")) for d in (dataset, *extra)]
    train_shard, val_shard = train_shards[0], Shard(dataset.split("val"))
    if val_shard.num_tokens == 0:
        val_shard = train_shard  # tiny corpora: fall back rather than fail
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RUN_CONFIG, dump_config(config))

    torch.manual_seed(cfg.seed)
    model_cfg = config.model.model_copy(update={"vocab_size": tokenizer.vocab_size})
    model = Transformer(model_cfg).to(device)
    windows = training_windows(config, tokenizer.vocab, train_shards)
    feed = BatchFeed(windows, cfg.batch_size, config.data.loader_workers)
    seq_len = config.data.seq_len

    def evaluate(m):
        loss, _ = nll_per_token(m, val_shard, seq_len, device, limit=cfg.eval_windows)
        return {"val_loss": round(loss, 5), "val_ppl": round(math.exp(loss), 4)}

    def meta_for(state: LoopState, metrics: dict) -> dict:
        return {
            "name": config.name,
            "parameters": model.num_params(),
            "data_fingerprint": dataset.fingerprint,
            "data_source": config.data.source,
            "metrics": {"val_nll_per_token": metrics["val_loss"], "val_ppl": metrics["val_ppl"]},
            "training": {
                "steps": state.step,
                "training_tokens": state.tokens,
                "wall_time_s": round(state.wall_time, 1),
                "device": str(device),
                "command": " ".join(sys.argv),
            },  # fmt: skip
        }

    def on_best(m, state, metrics):
        save_model(m, tokenizer, run_dir / MODEL_DIR, meta_for(state, metrics))

    started = time.perf_counter()
    state = train_loop(model, cfg, run_dir, feed, evaluate, on_best, device, resume=resume,
                       progress=progress, extra_state={"config": config.model_dump(mode="json")})  # fmt: skip
    best = load_model(run_dir / MODEL_DIR, device)
    test_shard = Shard(dataset.split("test"))
    meta = best.meta
    if test_shard.num_tokens:
        test_loss, n = nll_per_token(best.model, test_shard, seq_len, device)
        meta["metrics"] |= {"test_nll_per_token": round(test_loss, 5),
                            "test_ppl": round(math.exp(test_loss), 4), "test_tokens": n}  # fmt: skip
    meta["training"]["total_steps"] = state.step
    meta["training"]["process_wall_time_s"] = round(time.perf_counter() - started, 1)
    save_model(best.model, tokenizer, run_dir / MODEL_DIR, meta)
    return meta
