"""Which windows each process reads, and reading them (optionally in DataLoader workers).

Step ``s`` reads the windows ``s*G .. s*G+G-1`` with ``G = batch_size * grad_accum * world``:
micro-batch ``m`` of rank ``r`` takes the ``batch_size`` windows from ``s*G + (m*world + r) *
batch_size``. So every window of a step is read exactly once, by one rank, and the same
windows make a step however they are split between processes and micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def window_indices(step: int, micro: int, rank: int, world: int, batch_size: int,
                   grad_accum: int) -> range:  # fmt: skip
    """The window indices of micro-batch ``micro`` of ``step`` on ``rank``."""
    per_step = batch_size * grad_accum * world
    start = step * per_step + (micro * world + rank) * batch_size
    return range(start, start + batch_size)


class BatchFeed:
    """``feed(step, micro)`` -> this rank's (inputs, targets) for that micro-batch.

    Micro-batches must be asked for in order (a jump restarts the DataLoader workers).

    Args:
        dataset: the windows (each a pure function of its index, so any worker may make it).
        batch_size: windows per micro-batch.
        grad_accum: micro-batches per step.
        rank, world: this process and how many there are.
        workers: DataLoader worker processes (0: in this process).
        context: how workers start ("fork", "spawn", "forkserver"; None: the default).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, batch_size: int, grad_accum: int = 1,
                 rank: int = 0, world: int = 1, workers: int = 0,
                 context: str | None = None):  # fmt: skip
        self.dataset, self.batch_size, self.grad_accum = dataset, batch_size, grad_accum
        self.rank, self.world, self.workers, self.context = rank, world, workers, context
        self._iter, self._next = None, None

    def indices(self, step: int, micro: int) -> range:
        return window_indices(step, micro, self.rank, self.world, self.batch_size, self.grad_accum)

    def _plan(self, step: int, micro: int) -> Iterator[list[int]]:
        """Every micro-batch's indices from (step, micro) on, in order."""
        while True:
            for m in range(micro, self.grad_accum):
                yield list(self.indices(step, m))
            step, micro = step + 1, 0

    def __call__(self, step: int, micro: int = 0):
        if self.workers == 0:
            items = [self.dataset[i] for i in self.indices(step, micro)]
            return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
        if self._iter is None or (step, micro) != self._next:
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._plan(step, micro), num_workers=self.workers,
                persistent_workers=True, multiprocessing_context=self.context,
            )  # fmt: skip
            self._iter = iter(loader)
        self._next = (step, micro + 1) if micro + 1 < self.grad_accum else (step + 1, 0)
        return next(self._iter)
