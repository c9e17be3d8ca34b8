"""A plain, model-agnostic training loop (in the spirit of minGPT's trainer and nanoGPT).

The loop knows nothing about music or models: a :class:`~aurl.train.task.Task` gives it
optimizers and named loss terms, ``feed(step, micro)`` gives this process its micro-batches.
The loop owns the schedule, mixed precision, gradient accumulation, data parallelism,
clipping, anomaly handling, validation, early stopping, logging, checkpoints and resuming.

Step ``s`` covers ``grad_accum`` micro-batches on each of the ``world`` processes. Each
micro-batch's loss is weighted by its share of the whole step (``Task.batch_weight``), so
the update is that of one batch of all the step's windows, however they are split.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from aurl.errors import DivergedError
from aurl.train import distributed as dd
from aurl.train.anomaly import AnomalyGuard
from aurl.train.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from aurl.train.config import TrainConfig
from aurl.train.logger import RunLog, trim_metrics
from aurl.train.precision import autocast, grad_scaler
from aurl.train.schedule import lr_at
from aurl.train.task import Batch, Task


@dataclass
class LoopState:
    """What the loop carries between steps and across a resume."""

    step: int = 0
    best_val: float = math.inf
    best_step: int = -1
    tokens: int = 0
    wall_time: float = 0.0
    history: list[dict] = field(default_factory=list)
    evals_since_best: int = 0
    lr_scale: float = 1.0  # lowered by each rollback
    rollbacks: int = 0
    stop_reason: str = ""


@dataclass
class _Run:
    """The loop's working set, so helpers below take one argument instead of ten."""

    task: Task
    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    ranks: dd.Ranks
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    state: LoopState
    log: RunLog
    guards: dict[str, AnomalyGuard]
    extra_state: dict
    wrapped: list[torch.nn.Module] = field(default_factory=list)
    bad_in_a_row: int = 0
    bar: tqdm | None = None
    window_start: float = 0.0  # tokens/s is measured over the steps since the last log
    window_tokens: int = 0

    def snapshot(self) -> dict:
        rngs = dd.gather(rng_state(), self.ranks)
        return {
            "model": self.task.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(), "loop": vars(self.state), "rng": rngs,
            **self.extra_state,
        }  # fmt: skip

    def checkpoint(self) -> None:
        snap = self.snapshot()  # every rank takes part in gathering the RNG states
        if self.ranks.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT, snap)
        dd.barrier(self.ranks)

    def restore(self) -> None:
        """Load the run's checkpoint on every rank (rank 0 reads it and sends it)."""
        ckpt = dd.broadcast(
            load_checkpoint(self.run_dir / CHECKPOINT) if self.ranks.is_main else None, self.ranks
        )
        self.task.model.load_state_dict(ckpt["model"])
        saved = ckpt.get("optimizers") or {next(iter(self.optimizers)): ckpt["optimizer"]}
        for name, opt in self.optimizers.items():
            opt.load_state_dict(saved[name])
        if "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = LoopState(**ckpt["loop"])
        rngs = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]
        set_rng_state(rngs[self.ranks.rank % len(rngs)])  # one per rank that saved it

    def set_lr(self) -> float:
        cfg = self.cfg
        lr = lr_at(self.state.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        lr *= self.state.lr_scale
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr


def _no_sync(modules: list[torch.nn.Module], last: bool):
    """Skip DDP's gradient all-reduce on every micro-batch but a step's last."""
    stack = contextlib.ExitStack()
    if not last:
        for m in modules:
            if hasattr(m, "no_sync"):
                stack.enter_context(m.no_sync())
    return stack


def _phase(
    run: _Run, phase: str, micro: list[Batch], shares: list[float]
) -> tuple[dict, float, str | None]:
    """Accumulate ``phase``'s gradients over the micro-batches and step its optimizer.

    Returns the phase's terms (means over the whole step, all ranks), its gradient norm,
    and why the step was skipped (None when it was taken).
    """
    task, opt, step = run.task, run.optimizers[phase], run.state.step
    weights = task.loss_weights(step)
    opt.zero_grad(set_to_none=True)
    sums: dict[str, torch.Tensor] = {}
    for i, (batch, share) in enumerate(zip(micro, shares, strict=True)):
        with _no_sync(run.wrapped, i == len(micro) - 1), autocast(run.cfg.precision, run.device):
            terms = task.losses(phase, batch, step)
            loss = sum(weights.get(name, 1.0) * t for name, t in terms.items())
        # share of the step's mean; DDP averages over ranks, so undo its division
        run.scaler.scale(loss * (share * run.ranks.world)).backward()
        for name, t in terms.items():
            sums[name] = sums.get(name, 0.0) + t.detach().float() * share
    names = list(sums)
    totals = dd.all_reduce_sum(torch.stack([sums[n] for n in names]).cpu(), run.ranks)
    terms = {n: float(v) for n, v in zip(names, totals, strict=True)}
    run.scaler.unscale_(opt)
    params = [p for g in opt.param_groups for p in g["params"]]
    norm = float(torch.nn.utils.clip_grad_norm_(params, run.cfg.grad_clip or math.inf))
    total = sum(weights.get(n, 1.0) * v for n, v in terms.items())
    overflow = run.scaler.is_enabled() and not math.isfinite(norm)  # fp16: the scaler's business
    why = None if overflow else run.guards[phase].check(total, norm)
    if why is None:
        run.scaler.step(opt)
    else:
        opt.zero_grad(set_to_none=True)
    return terms | {"loss": total}, norm, why


def _train_step(run: _Run, feed: Callable[[int, int], Batch]) -> tuple[dict, int, str | None]:
    """One optimizer step of every phase; returns the record, tokens seen and any anomaly."""
    step, task = run.state.step, run.task
    lr = run.set_lr()
    micro = [feed(step, m) for m in range(run.cfg.grad_accum)]
    local = torch.tensor(
        [task.batch_weight(b) for b in micro] + [sum(task.batch_tokens(b) for b in micro)],
        dtype=torch.float64,
    )
    reduced = dd.all_reduce_sum(local.clone(), run.ranks)
    total_weight = float(reduced[:-1].sum()) or 1.0
    shares = [float(w) / total_weight for w in local[:-1]]
    record: dict = {"step": step + 1, "lr": lr}
    problems = []
    for phase in task.phases():
        terms, norm, why = _phase(run, phase, micro, shares)
        suffix = "" if len(run.optimizers) == 1 else f"_{phase}"
        record |= {f"{k}{suffix}" if k == "loss" else k: round(v, 5) for k, v in terms.items()}
        record[f"grad_norm{suffix}"] = round(norm, 4)
        if why:
            problems.append(f"{phase}: {why}" if suffix else why)
    run.scaler.update()
    return record, int(reduced[-1]), "; ".join(problems) or None


def _validate(run: _Run, on_eval: Callable[[int, dict], None] | None) -> None:
    """Rank 0 evaluates, exports an improved model, logs a preview and judges early stopping;
    every rank learns whether to stop."""
    state, cfg = run.state, run.cfg
    if run.ranks.is_main:
        metrics = run.task.evaluate()
        record = {"step": state.step, **metrics}
        run.log.write(record, "val")
        state.history.append(record)
        stop = cfg.early_stop
        if metrics["val_loss"] < state.best_val - (stop.min_delta if stop.patience else 0.0):
            state.best_val, state.best_step, state.evals_since_best = (
                metrics["val_loss"],
                state.step,
                0,
            )
            run.task.export(metrics, {"steps": state.step, "training_tokens": state.tokens,
                                      "wall_time_s": round(state.wall_time, 1)})  # fmt: skip
        else:
            state.evals_since_best += 1
        if not run.bar.disable:  # quiet runs print only what went wrong or stopped them
            run.bar.write(f"step {state.step}: val loss {metrics['val_loss']:.4f} "
                          f"(best {state.best_val:.4f} at {state.best_step})")  # fmt: skip
        if stop.patience and state.evals_since_best >= stop.patience:
            state.stop_reason = (
                f"early stop at step {state.step}: validation loss has not improved by "
                f"{stop.min_delta:g} in {stop.patience} evaluations (best {state.best_val:.4f} "
                f"at step {state.best_step})"
            )
            run.bar.write(state.stop_reason)
            run.log.write({"step": state.step, "early_stop": state.stop_reason}, "val")
        preview = run.task.preview() if run.log.writer is not None else None
        if preview is not None:
            run.log.image("sample/piano_roll", preview.image, state.step)
            run.log.write({"step": state.step, **preview.scalars}, "sample")
        if on_eval is not None:
            on_eval(state.step, metrics)
    state.stop_reason = dd.broadcast(state.stop_reason, run.ranks)


def _roll_back(run: _Run, why: str) -> None:
    """After too many bad steps in a row: back to the last checkpoint, at a lower rate."""
    cfg, state = run.cfg.anomaly, run.state
    if state.rollbacks >= cfg.max_rollbacks:
        raise DivergedError(
            f"training diverged at step {state.step + 1} ({why}) after {state.rollbacks} rollbacks"
        )
    scale, rollbacks, at = state.lr_scale * cfg.lr_factor, state.rollbacks + 1, state.step
    if (run.run_dir / CHECKPOINT).is_file():
        run.restore()
    run.state.lr_scale, run.state.rollbacks = scale, rollbacks
    run.bad_in_a_row = 0
    message = (f"{cfg.rollback_after} bad steps in a row at step {at + 1} ({why}): rolled back to "
               f"step {run.state.step}, learning rate x{scale:g}")  # fmt: skip
    run.log.write({"step": run.state.step, "rollback": message}, "anomaly")
    if run.ranks.is_main:
        run.bar.write(message)
    run.bar.n = run.state.step


def train_loop(
    task: Task,
    cfg: TrainConfig,
    run_dir: Path,
    feed: Callable[[int, int], Batch],
    device: torch.device,
    ranks: dd.Ranks | None = None,
    resume: bool = False,
    progress: bool = True,
    extra_state: dict | None = None,
    on_eval: Callable[[int, dict], None] | None = None,
) -> LoopState:
    """Train ``task`` up to ``cfg.max_steps`` steps, or continue from the run's checkpoint.

    Args:
        feed: this process's micro-batch ``micro`` of step ``step`` (a pure function of both:
            resuming replays the data).
        ranks: this process among the data-parallel ones (default: alone).
        extra_state: saved in the checkpoint as is (configs, fingerprints).
        on_eval: called on rank 0 after each validation with the step and the metrics (it may
            raise to end the run, as a hyperparameter search prunes a trial).
    """
    ranks = ranks or dd.Ranks()
    run = _Run(task, cfg, Path(run_dir), device, ranks, task.optimizers(),
               grad_scaler(cfg.precision, device), LoopState(),
               RunLog(run_dir, ranks.is_main, cfg.tensorboard),
               {p: AnomalyGuard(cfg.anomaly.spike_factor, cfg.anomaly.window) for p in task.phases()},
               extra_state or {})  # fmt: skip
    if resume:
        run.restore()
        run.state.stop_reason = ""  # an early-stopped run that is resumed goes on
        if ranks.is_main:
            trim_metrics(run.run_dir, run.state.step)
    run.wrapped = task.distribute(dd.wrapper(ranks, device))
    run.bar = tqdm(total=cfg.max_steps, initial=run.state.step, desc="train", unit="step",
                   disable=not (progress and ranks.is_main), dynamic_ncols=True)  # fmt: skip
    run.window_start = time.perf_counter()
    try:
        while run.state.step < cfg.max_steps and not run.state.stop_reason:
            _one_step(run, feed, on_eval)
    finally:
        run.bar.close()
        run.log.close()
    return run.state


def _one_step(run: _Run, feed: Callable[[int, int], Batch],
              on_eval: Callable[[int, dict], None] | None) -> None:  # fmt: skip
    """A training step, then whatever falls due: logging, validation, a checkpoint."""
    cfg, t0 = run.cfg, time.perf_counter()
    record, tokens, why = _train_step(run, feed)
    state = run.state
    if why is not None:
        run.bad_in_a_row += 1
        if run.bad_in_a_row >= cfg.anomaly.rollback_after:
            _roll_back(run, why)
            return
        run.log.write({"step": state.step + 1, "skipped": why}, "anomaly")
        run.bar.write(f"step {state.step + 1} skipped: {why}")
    else:
        run.bad_in_a_row = 0
    state.step += 1
    state.tokens += tokens
    run.window_tokens += tokens
    state.wall_time += time.perf_counter() - t0
    last = state.step == cfg.max_steps
    if state.step % cfg.log_every == 0 or last:
        elapsed = time.perf_counter() - run.window_start
        record["tokens_per_s"] = round(run.window_tokens / max(elapsed, 1e-9), 1)
        run.log.write(record)
        run.bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}",
                            tok_s=f"{record['tokens_per_s']:.0f}")  # fmt: skip
        run.window_start, run.window_tokens = time.perf_counter(), 0
    if state.step % cfg.eval_every == 0 or last:
        t_eval = time.perf_counter()
        _validate(run, on_eval)
        run.window_start += time.perf_counter() - t_eval  # tokens/s counts training only
    if state.step % cfg.checkpoint_every == 0 or last or state.stop_reason:
        run.checkpoint()
    run.bar.update(1)
