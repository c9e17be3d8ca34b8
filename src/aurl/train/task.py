"""What a training recipe gives the loop: a ``Task``.

A task owns its model(s) and optimizer(s) and turns a batch into named loss terms. The loop
(:mod:`aurl.train.loop`) knows nothing else about it: it runs the task's phases in order (one
per optimizer: a discriminator's phase before a generator's, say), sums each phase's terms
with the task's weights for the step, steps the optimizer, logs every term by name, and asks
the task to evaluate and export. Follows torchtune's recipes and audiocraft's solvers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from aurl.losses import target_count
from aurl.tokens import PAD

if TYPE_CHECKING:
    from aurl.train.config import TrainConfig

Batch = Any  # whatever the task's feed gives; the task moves it to its device


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms or biases)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


class Task(ABC):
    """The interface the loop drives, with the defaults of a one-optimizer task.

    Attributes:
        model: every trained parameter (the module checkpointed and exported).
    """

    model: nn.Module

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name; :meth:`phases` orders their updates within a step."""

    def phases(self) -> list[str]:
        """Optimizer names in the order they update in each step (default: all, as listed)."""
        return list(self.optimizers())

    @abstractmethod
    def distribute(self, wrap: Callable[[nn.Module], nn.Module]) -> list[nn.Module]:
        """Wrap the modules that run forward in training (DDP); return the wrapped ones."""

    @abstractmethod
    def losses(self, phase: str, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """Named loss terms (scalars) of ``batch`` for the optimizer of ``phase``."""

    def loss_weights(self, step: int) -> dict[str, float]:
        """Weight of each term at ``step`` (a schedule); a term not named here weighs 1."""
        return {}

    def batch_weight(self, batch: Batch) -> float:
        """How much ``batch`` counts in its step's mean (tokens that count, for a language
        model), so micro-batches and ranks of unequal size give the mean of the whole step."""
        return 1.0

    def batch_tokens(self, batch: Batch) -> int:
        """Tokens in ``batch``, for tokens/s."""
        return 0

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation metrics; must hold ``val_loss`` (lower is better)."""

    @abstractmethod
    def export(self, metrics: dict[str, float], progress: dict[str, float]) -> None:
        """Save the model as the run's best (called when ``val_loss`` improves); ``progress``
        holds ``steps``, ``training_tokens`` and ``wall_time_s`` so far."""

    def preview(self) -> Preview | None:
        """A sample for the logs (a piano roll and whether it is grammatical), or None."""
        return None


class Preview:
    """A picture of a sample (H, W, 3 uint8) and scalar facts about it."""

    def __init__(self, image: np.ndarray, scalars: dict[str, float]):
        self.image, self.scalars = image, scalars


class TokenTask(Task):
    """A task of one model and one AdamW over (inputs, targets) token batches: each batch
    weighs by its targets that are not PAD. Subclasses give the loss terms.

    Args:
        model: the model trained, checkpointed and exported.
        cfg: the train section (optimizer settings).
        device: where batches go.
        evaluate: validation metrics of the (unwrapped) model.
        export: saves the model with the given meta (``metrics``, ``progress``).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device,
                 evaluate: Callable[[nn.Module], dict], export: Callable[[dict, dict], None]):  # fmt: skip
        self.model, self.train_model, self.device, self.cfg = model, model, device, cfg
        self._optimizer = make_optimizer(model, cfg)
        self._evaluate, self._export = evaluate, export

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self._optimizer}

    def distribute(self, wrap):
        self.train_model = wrap(self.model)
        return [self.train_model]

    def batch_weight(self, batch) -> float:
        return float(target_count(batch[1], PAD))

    def batch_tokens(self, batch) -> int:
        return int(batch[0].numel())

    def evaluate(self) -> dict[str, float]:
        metrics = self._evaluate(self.model)
        self.model.train()
        return metrics

    def export(self, metrics, progress) -> None:
        self._export(metrics, progress)
