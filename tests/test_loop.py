"""The model-agnostic loop on a toy task: accumulation, several optimizers, bad steps and
rollback, early stopping, logging. Seconds, no music."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from aurl.train.config import TrainConfig
from aurl.train.loop import DivergedError, train_loop
from aurl.train.task import Task

DIM = 6


def toy_batch(step: int, micro: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression data that depends only on (step, micro); rows of zeros weigh nothing."""
    g = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(size, DIM, generator=g)
    y = x @ torch.arange(1.0, DIM + 1) + 0.1 * torch.randn(size, generator=g)
    return x, y


class ToyTask(Task):
    """Linear regression; optionally a second parameter with its own optimizer."""

    def __init__(self, two_phases: bool = False, nan_at: tuple[int, ...] = (),
                 val_losses: list[float] | None = None, always_nan: bool = False):  # fmt: skip
        torch.manual_seed(0)
        self.model = nn.ModuleDict({"a": nn.Linear(DIM, 1, bias=False)})
        if two_phases:
            self.model["b"] = nn.Linear(DIM, 1, bias=False)
        self.nan_at, self.val_losses, self.exports = set(nan_at), val_losses, []
        self.always_nan = always_nan
        self.opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in self.model.items()}

    def optimizers(self):
        return self.opts

    def distribute(self, wrap):
        return [wrap(self.model)]

    def losses(self, phase, batch, step):
        x, y = batch
        err = ((self.model[phase](x).squeeze(-1) - y) ** 2).mean()
        if step in self.nan_at or self.always_nan:  # a passing fault: once per step
            self.nan_at.discard(step)
            err = err * math.nan
        return {f"mse_{phase}": err}

    def batch_weight(self, batch):
        return float(len(batch[0]))

    def batch_tokens(self, batch):
        return len(batch[0])

    def evaluate(self):
        if self.val_losses is not None:
            return {"val_loss": self.val_losses.pop(0)}
        x, y = toy_batch(99, 0, 64)
        with torch.no_grad():
            return {"val_loss": float(((self.model["a"](x).squeeze(-1) - y) ** 2).mean())}

    def export(self, metrics, progress):
        self.exports.append(progress["steps"])


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=10, lr=0.05, min_lr=0.05, warmup_steps=0, eval_every=5,
                checkpoint_every=5, log_every=1, tensorboard=False, grad_clip=0)  # fmt: skip
    return TrainConfig.model_validate(base | kw)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def run_toy(tmp_path: Path, task: ToyTask, config: TrainConfig, feed, name: str = "run"):
    run = tmp_path / name
    run.mkdir()
    state = train_loop(task, config, run, feed, torch.device("cpu"), progress=False)
    return run, state


def test_accumulated_micro_batches_equal_one_big_batch(tmp_path):
    sizes = (3, 5)  # unequal micro-batches: each weighs by its rows, as tokens do

    def split(step, micro):
        x, y = toy_batch(step, 0, sum(sizes))
        cut = slice(0, sizes[0]) if micro == 0 else slice(sizes[0], None)
        return x[cut], y[cut]

    one, accumulated = ToyTask(), ToyTask()
    run_toy(tmp_path, one, cfg(max_steps=4), lambda s, m: toy_batch(s, 0, sum(sizes)), "one")
    run_toy(tmp_path, accumulated, cfg(max_steps=4, grad_accum=2), split, "two")
    w1, w2 = one.model["a"].weight, accumulated.model["a"].weight
    assert not torch.equal(w1, ToyTask().model["a"].weight)  # it trained
    assert torch.allclose(w1, w2, atol=1e-6)


def test_every_optimizer_steps_and_every_term_is_logged(tmp_path):
    task = ToyTask(two_phases=True)
    before = {k: m.weight.clone() for k, m in task.model.items()}
    run, _ = run_toy(tmp_path, task, cfg(max_steps=3), lambda s, m: toy_batch(s, m, 8))
    assert all(not torch.equal(before[k], m.weight) for k, m in task.model.items())
    first = records(run)[0]
    assert {"mse_a", "mse_b", "loss_a", "loss_b", "grad_norm_a", "grad_norm_b"} <= set(first)


def test_a_bad_step_is_skipped_and_bad_runs_roll_back(tmp_path):
    # one NaN step: skipped, the weights untouched by it
    task = ToyTask(nan_at=(3,))
    run, state = run_toy(tmp_path, task, cfg(max_steps=6), lambda s, m: toy_batch(s, m, 8), "skip")
    assert state.step == 6 and state.rollbacks == 0
    assert any("skipped" in r and "loss is nan" in r["skipped"] for r in records(run))
    assert torch.isfinite(task.model["a"].weight).all()
    # three in a row (steps 6, 7, 8 of 0-based steps): back to the step-5 checkpoint, lr halved
    task = ToyTask(nan_at=(6, 7, 8))
    run, state = run_toy(tmp_path, task, cfg(max_steps=10, anomaly={"rollback_after": 3}),
                         lambda s, m: toy_batch(s, m, 8), "rollback")  # fmt: skip
    rolled = [r for r in records(run) if "rollback" in r]
    assert len(rolled) == 1 and "rolled back to step 5" in rolled[0]["rollback"]
    assert state.rollbacks == 1 and state.lr_scale == 0.5 and state.step == 10
    lrs = [r["lr"] for r in records(run) if "lr" in r]
    assert lrs[-1] == pytest.approx(0.025)
    # NaN at every step: rollbacks run out and the run stops with an error
    task = ToyTask(always_nan=True)
    with pytest.raises(DivergedError, match="diverged"):
        run_toy(tmp_path, task, cfg(anomaly={"rollback_after": 2, "max_rollbacks": 2}),
                lambda s, m: toy_batch(s, m, 8), "diverged")  # fmt: skip


def test_gradient_spikes_are_caught_against_the_running_median(tmp_path):
    def feed(step, micro):
        x, y = toy_batch(step, micro, 8)
        return (x * 1000, y * 1000) if step == 8 else (x, y)

    config = cfg(max_steps=10, anomaly={"spike_factor": 5, "window": 10})
    run, state = run_toy(tmp_path, ToyTask(), config, feed)
    skipped = [r for r in records(run) if "skipped" in r]
    assert [r["step"] for r in skipped] == [9] and "median" in skipped[0]["skipped"]


def test_early_stopping_keeps_the_best_and_says_why(tmp_path, capsys):
    task = ToyTask(val_losses=[1.0, 0.5, 0.6, 0.55, 0.7, 0.1])
    config = cfg(max_steps=100, eval_every=2, early_stop={"patience": 3, "min_delta": 0.01})
    run, state = run_toy(tmp_path, task, config, lambda s, m: toy_batch(s, m, 8))
    assert state.step == 10 and state.best_step == 4 and task.exports == [2, 4]
    assert "early stop at step 10" in state.stop_reason
    assert any("early_stop" in r for r in records(run))
    assert (run / "checkpoint.pt").is_file()


def test_tensorboard_gets_every_scalar(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = run_toy(tmp_path, ToyTask(), cfg(max_steps=4, tensorboard=True),
                     lambda s, m: toy_batch(s, m, 8))  # fmt: skip
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/mse_a", "train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s",
            "val/val_loss"} <= tags  # fmt: skip
    assert len(events.Scalars("train/loss")) == 4
