"""A plain, model-agnostic training loop (in the spirit of minGPT's trainer and nanoGPT).

The loop knows nothing about music or transformers: it takes a model whose
``forward(x, y)`` returns ``(output, loss)``, a function giving the batch for a step, and an
evaluation function. It owns AdamW, the schedule, clipping, logging, checkpoints and resuming.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from aurl.config import TrainConfig
from aurl.train.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from aurl.train.schedule import lr_at

METRICS = "metrics.jsonl"


@dataclass
class LoopState:
    """What the loop carries between steps and across a resume."""

    step: int = 0
    best_val: float = math.inf
    best_step: int = -1
    tokens: int = 0
    wall_time: float = 0.0
    history: list[dict] = field(default_factory=list)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms or biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def _trim_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint so the curve stays one line."""
    path = run_dir / METRICS
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def train_loop(
    model: torch.nn.Module,
    cfg: TrainConfig,
    run_dir: Path,
    get_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    evaluate: Callable[[torch.nn.Module], dict],
    on_best: Callable[[torch.nn.Module, LoopState, dict], None],
    device: torch.device,
    resume: bool = False,
    progress: bool = True,
    extra_state: dict | None = None,
) -> LoopState:
    """Train ``model`` for ``cfg.max_steps`` steps, or continue from the run's checkpoint.

    Args:
        get_batch: batch for a step (a pure function of the step: resuming replays the data).
        evaluate: returns ``{"val_loss": ...}`` and anything else worth logging.
        on_best: called with the model when the validation loss improves (export it).
        extra_state: saved in the checkpoint as is (configs, fingerprints).
    """
    optimizer = make_optimizer(model, cfg)
    state = LoopState()
    ckpt_path = run_dir / CHECKPOINT
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = LoopState(**ckpt["loop"])
        set_rng_state(ckpt["rng"])
        _trim_metrics(run_dir, state.step)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "loop": vars(state), "rng": rng_state(), **(extra_state or {}),
        })  # fmt: skip

    model.train()
    bar = tqdm(total=cfg.max_steps, initial=state.step, desc="train", unit="step",
               disable=not progress, dynamic_ncols=True)  # fmt: skip
    window_start, window_tokens = time.perf_counter(), 0
    while state.step < cfg.max_steps:
        t0 = time.perf_counter()
        lr = lr_at(state.step, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = (t.to(device, non_blocking=True) for t in get_batch(state.step))
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
        optimizer.step()
        state.step += 1
        n_tokens = int(x.numel())
        state.tokens += n_tokens
        window_tokens += n_tokens
        state.wall_time += time.perf_counter() - t0
        if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
            elapsed = time.perf_counter() - window_start
            record = {"step": state.step, "loss": round(loss.item(), 5), "lr": lr,
                      "grad_norm": round(float(grad_norm), 4),
                      "tokens_per_s": round(window_tokens / max(elapsed, 1e-9), 1)}  # fmt: skip
            _append_metrics(run_dir, record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            window_start, window_tokens = time.perf_counter(), 0
        if state.step % cfg.eval_every == 0 or state.step == cfg.max_steps:
            t_eval = time.perf_counter()
            metrics = evaluate(model)
            model.train()
            record = {"step": state.step, **metrics}
            _append_metrics(run_dir, record)
            state.history.append(record)
            if metrics["val_loss"] < state.best_val:
                state.best_val, state.best_step = metrics["val_loss"], state.step
                on_best(model, state, metrics)
            bar.write(f"step {state.step}: val loss {metrics['val_loss']:.4f} "
                      f"(best {state.best_val:.4f} at {state.best_step})")  # fmt: skip
            window_start += time.perf_counter() - t_eval
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps:
            checkpoint()
        bar.update(1)
    bar.close()
    return state
