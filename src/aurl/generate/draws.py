"""Draws with settings per row: each sequence of a shared batch samples with its own
temperature, top-k, top-p and seed.

This is what lets a server put requests with different settings into one batch. A row's
random numbers come from a counter-based hash of (its seed, its position, the token id), not
from a shared generator, so what a row draws depends on its own logits and seed alone: the
same request gives the same piece whether it runs alone or beside others, and rows can
join, leave or be reordered without disturbing anyone's stream of numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aurl.generate.filters import NEG_INF
from aurl.tokens.mask import RowTensors

# splitmix64's constants as signed 64-bit integers (torch has no unsigned int64 arithmetic;
# products wrap around the same way).
_GOLDEN = 0x9E3779B97F4A7C15 - 2**64
_MIX1 = 0xBF58476D1CE4E5B9 - 2**64
_MIX2 = 0x94D049BB133111EB - 2**64
_POSITION = 0x632BE59BD9B4E019


@dataclass(frozen=True)
class RowSampling:
    """One sequence's sampling settings: ``temperature`` 0 picks the likeliest token."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.temperature <= 100:
            raise ValueError(f"temperature must be between 0 and 100, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (off) or more, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class RowDraws(RowTensors):
    """The sampling settings of a batch, one row per sequence."""

    _ROWS = ("temperature", "top_k", "top_p", "seed")

    def __init__(self, settings: list[RowSampling], device: torch.device | str = "cpu"):
        tensor = lambda values, dtype: torch.tensor(values, dtype=dtype, device=device)  # noqa: E731
        self.temperature = tensor([s.temperature for s in settings], torch.float32)
        self.top_k = tensor([s.top_k for s in settings], torch.long)
        self.top_p = tensor([s.top_p for s in settings], torch.float32)
        self.seed = tensor([s.seed for s in settings], torch.long)

    def draw(self, logits: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token per row from ``logits`` (B, V), the row's ``position`` (B,) numbering
        its draws. Rows at temperature 0 take their likeliest token."""
        greedy = self.temperature == 0
        t = torch.where(greedy, 1.0, self.temperature)[:, None]
        filtered = nucleus(top_k_rows(logits.float() / t, self.top_k), self.top_p)
        noise = uniform(self.seed, position, logits.shape[1])
        drawn = (filtered - torch.log(-torch.log(noise))).argmax(-1)
        return torch.where(greedy, logits.argmax(-1), drawn)


def top_k_rows(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Keep each row's ``k[row]`` largest logits (0: all)."""
    vocab = logits.shape[1]
    on = (k > 0) & (k < vocab)
    if not bool(on.any()):
        return logits
    kmax = int(torch.where(on, k, 1).max())
    values = torch.topk(logits, kmax, dim=-1).values
    kth = values.gather(1, (torch.where(on, k, 1) - 1)[:, None])
    return logits.masked_fill(on[:, None] & (logits < kth), NEG_INF)


def nucleus(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Keep each row's smallest set of tokens whose probability reaches ``p[row]`` (1: all),
    by a full sort (as :func:`aurl.generate.filters.top_p_sorted`, with ``p`` per row)."""
    if bool((p >= 1).all()):
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs
    cut = (before > p[:, None]) & (p[:, None] < 1)
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits.masked_fill(cut, NEG_INF))


def uniform(seed: torch.Tensor, position: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) numbers in (0, 1), a pure function of (seed, position, column): splitmix64
    of the three mixed together, top 24 bits."""
    column = torch.arange(width, device=seed.device)
    x = (seed * _GOLDEN + position * _POSITION)[:, None] + column[None] * _GOLDEN
    x = _mix(_mix(x))
    bits = _shr(x, 40)
    return (bits.float() + 0.5) / float(1 << 24)


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = x + _GOLDEN
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def _shr(x: torch.Tensor, n: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` keeps the sign)."""
    return (x >> n) & ((1 << (64 - n)) - 1)
