"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr``. A pure function."""

from __future__ import annotations

import math


def lr_at(step: int, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def beta_at(step: int, kind: str, beta: float, warmup: int, cycle: int = 0) -> float:
    """The KL weight at ``step``: ``constant`` is ``beta``; ``linear`` rises from 0 to ``beta``
    over ``warmup`` steps; ``cyclical`` repeats that rise every ``cycle`` steps, holding
    ``beta`` for the rest of each cycle (Fu et al., 2019)."""
    if kind == "constant" or warmup <= 0:
        return beta
    if kind == "cyclical" and cycle > 0:
        step %= cycle
    return beta * min(1.0, step / warmup)
