"""A smoothed n-gram baseline: interpolated Kneser–Ney over token ids, vectorized with numpy.

The model that makes a transformer's likelihood meaningful: trained on the same train-split
ids and scored on the same test ids, it says how much of the model's number a count table
already gets. The recipe is Chen & Goodman's interpolated Kneser–Ney with one absolute
discount per order, ``D = n1 / (n1 + 2 n2)``: the highest order uses raw counts, every lower
order uses continuation counts (how many distinct tokens precede an n-gram), and unigrams
interpolate with the uniform distribution, so every id gets a non-zero probability.

Each piece is padded on the left with ``order - 1`` PAD ids (which never occur inside a
piece), and, as in :func:`aurl.evaluate.likelihood.nll_per_token`, every token after a
piece's first is predicted exactly once. An n-gram is one int64 key (base ``vocab_size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aurl.tokens import PAD


@dataclass(frozen=True)
class _Table:
    """Counts of one order: sorted n-gram keys and counts, and per-context totals."""

    keys: np.ndarray  # sorted unique n-gram keys (context * V + word)
    counts: np.ndarray  # count used at this order (raw at the top, continuation below)
    contexts: np.ndarray  # sorted unique context keys
    context_totals: np.ndarray  # sum of counts per context
    context_types: np.ndarray  # number of distinct words seen after the context
    discount: float


@dataclass(frozen=True)
class KneserNey:
    """A fitted interpolated Kneser–Ney model (see :func:`fit_kneser_ney`)."""

    order: int
    vocab_size: int
    tables: tuple[_Table, ...]  # tables[k - 1] holds order k


def _padded(pieces: list[np.ndarray], order: int) -> tuple[np.ndarray, np.ndarray]:
    """All pieces back to back, each after ``order - 1`` PADs, and the positions to predict
    (every real token but each piece's first)."""
    parts, targets, at = [], [], 0
    for piece in pieces:
        piece = np.asarray(piece, np.int64)
        parts += [np.full(order - 1, PAD, np.int64), piece]
        start = at + order - 1
        targets.append(np.arange(start + 1, start + len(piece)))
        at = start + len(piece)
    seq = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return seq, np.concatenate(targets) if targets else np.zeros(0, np.int64)


def _keys(seq: np.ndarray, at: np.ndarray, order: int, base: int) -> list[np.ndarray]:
    """Keys of the n-grams ending at positions ``at``, for n = 1..order."""
    keys = [seq[at]]
    for k in range(2, order + 1):
        keys.append(seq[at - k + 1] * base ** (k - 1) + keys[-1])
    return keys


def _discount(counts: np.ndarray) -> float:
    n1, n2 = np.count_nonzero(counts == 1), np.count_nonzero(counts == 2)
    return float(n1 / (n1 + 2 * n2)) if n1 + n2 else 0.5


def _table(keys: np.ndarray, counts: np.ndarray, base: int) -> _Table:
    contexts, inverse = np.unique(keys // base, return_inverse=True)
    totals = np.bincount(inverse, weights=counts, minlength=len(contexts))
    types = np.bincount(inverse, minlength=len(contexts)).astype(np.float64)
    return _Table(keys, counts.astype(np.float64), contexts, totals, types, _discount(counts))


def fit_kneser_ney(pieces: list[np.ndarray], vocab_size: int, order: int = 5) -> KneserNey:
    """Count the n-grams of ``pieces`` (token id arrays) and fix the discounts.

    Raises:
        ValueError: ``order`` < 1, or keys of this order would overflow int64.
    """
    if order < 1:
        raise ValueError(f"n-gram order must be at least 1, got {order}")
    if order * math.log2(vocab_size) >= 63:
        raise ValueError(f"order {order} is too high for {vocab_size} ids (int64 keys)")
    seq, at = _padded(pieces, order)
    keys = _keys(seq, at, order, vocab_size)
    types = [np.unique(k, return_counts=True) for k in keys]  # raw counts per order
    tables = []
    for k in range(1, order + 1):
        if k == order:
            grams, counts = types[k - 1]
        else:  # continuation count: distinct tokens seen before each k-gram
            grams, counts = np.unique(types[k][0] % vocab_size**k, return_counts=True)
        tables.append(_table(grams, counts, vocab_size))
    return KneserNey(order, vocab_size, tuple(tables))


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(query))
    i = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return np.where(sorted_keys[i] == query, values[i], 0.0)


def token_log_probs(model: KneserNey, pieces: list[np.ndarray]) -> np.ndarray:
    """Natural-log probability of every predicted token of ``pieces`` (piece order)."""
    V = model.vocab_size
    seq, at = _padded(pieces, model.order)
    keys = _keys(seq, at, model.order, V)
    prob = np.full(len(at), 1.0 / V)
    for k, table in enumerate(model.tables, start=1):
        gram, context = keys[k - 1], keys[k - 1] // V
        total = _lookup(table.contexts, table.context_totals, context)
        types = _lookup(table.contexts, table.context_types, context)
        count = _lookup(table.keys, table.counts, gram)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        mixed = (np.maximum(count - table.discount, 0) + table.discount * types * prob) / safe
        prob = np.where(seen, mixed, prob)
    return np.log(prob)


def nll_per_token(model: KneserNey, pieces: list[np.ndarray]) -> tuple[float, int]:
    """Mean negative log-likelihood (nats) per predicted token, and the count."""
    logp = token_log_probs(model, pieces)
    return (float(-logp.mean()) if len(logp) else float("nan")), len(logp)
