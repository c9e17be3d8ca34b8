"""Spotting bad steps: a loss or gradient that is not finite, or a gradient-norm spike.

A bad step is skipped (the optimizer does not step). After ``rollback_after`` bad steps in a
row the loop goes back to the last checkpoint and lowers the learning rate.
"""

from __future__ import annotations

import math
from collections import deque
from statistics import median


class AnomalyGuard:
    """Judges each step's gradient norm against a running median of recent good ones.

    Args:
        spike_factor: a norm above this many times the running median is a spike (0: off).
        window: how many recent good norms the median covers.
        min_history: spikes are judged only once this many good norms are known (default:
            20, or half the window when that is smaller).
    """

    def __init__(self, spike_factor: float, window: int = 100, min_history: int | None = None):
        self.spike_factor = spike_factor
        self.min_history = min(20, window // 2) if min_history is None else min_history
        self.norms: deque[float] = deque(maxlen=window)

    def check(self, loss: float, grad_norm: float) -> str | None:
        """Why this step is bad (None when it is fine); good norms join the history."""
        if not math.isfinite(loss):
            return f"loss is {loss}"
        if not math.isfinite(grad_norm):
            return f"gradient norm is {grad_norm}"
        if self.spike_factor and len(self.norms) >= self.min_history:
            typical = median(self.norms)
            if grad_norm > self.spike_factor * typical:
                return f"gradient norm {grad_norm:.3g} is over {self.spike_factor:g}x the median {typical:.3g}"
        self.norms.append(grad_norm)
        return None
