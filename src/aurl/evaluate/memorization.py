"""Memorization and diversity: what a sample copies from the training set, and how alike the
samples are to each other.

Notes and bars become 64-bit keys, transposition-aware and independent of where in time
they sit:

* a note step (from note ``i - 1`` to note ``i``, in (time, program, pitch) order) is the
  onset gap, the interval, both durations and both programs; ``L`` matching consecutive
  steps mean ``L + 1`` notes copied up to a transposition;
* a bar is the multiset of its notes as (position, pitch above the bar's lowest pitch,
  duration, program) plus its length; a bar step adds the previous bar and the move of the
  lowest pitch between them, so ``L`` matching steps mean ``L + 1`` bars copied, all moved by
  the same interval.

The longest run of a sample's keys found contiguously in any training piece comes from
rolling polynomial hashes (mod 2**64): every length is tested for all samples at once by a
sorted-array membership test, first at 1, 2, 4, ... and then by bisection.
"""

from __future__ import annotations

import numpy as np

from aurl.evaluate.notes import Notes

_M = np.uint64(0xFFFFFFFFFFFFFFFF)
_BASE = 0x100000001B3  # odd, so invertible mod 2**64
_EMPTY_BAR = 0x5BD1E995


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, elementwise on uint64."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _combine(*parts: np.ndarray) -> np.ndarray:
    h = _mix(parts[0])
    for p in parts[1:]:
        h = _mix(h ^ np.asarray(p).astype(np.uint64))
    return h


def note_steps(n: Notes) -> np.ndarray:
    """One key per pair of consecutive notes (len(n) - 1 keys)."""
    t, p, d, g = n.time, n.pitch, n.duration, n.program
    if len(t) < 2:
        return np.zeros(0, np.uint64)
    return _combine(t[1:] - t[:-1], p[1:] - p[:-1], d[:-1], d[1:], g[:-1], g[1:])


def bar_contents(n: Notes) -> tuple[np.ndarray, np.ndarray]:
    """Per bar: a transposition-free content key, and its lowest pitch (carried over from
    the last non-empty bar for empty bars; 0 before the first)."""
    bars = n.num_bars
    if bars == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    bar = np.searchsorted(n.bar_starts, n.time, side="right") - 1
    lowest = np.full(bars, 128, np.int64)
    np.minimum.at(lowest, bar, n.pitch)
    pos = n.time - n.bar_starts[bar]
    note_key = _combine(pos, n.pitch - lowest[bar], n.duration, n.program)
    total = np.zeros(bars, np.uint64)
    np.add.at(total, bar, note_key)
    count = np.bincount(bar, minlength=bars)
    lengths = np.diff(np.append(n.bar_starts, n.bar_starts[-1] + _last_length(n)))
    content = np.where(count > 0, _combine(total, count, lengths), np.uint64(_EMPTY_BAR))
    filled = np.maximum.accumulate(np.where(count > 0, np.arange(bars), -1))
    carried = np.where(filled >= 0, lowest[np.maximum(filled, 0)], 0)
    return content, carried


def bar_steps(n: Notes) -> np.ndarray:
    """One key per pair of consecutive bars (num_bars - 1 keys)."""
    content, lowest = bar_contents(n)
    if len(content) < 2:
        return np.zeros(0, np.uint64)
    return _combine(content[:-1], content[1:], lowest[1:] - lowest[:-1])


def _last_length(n: Notes) -> int:
    if n.num_bars >= 2:
        return int(n.bar_starts[-1] - n.bar_starts[-2])
    return 4 * n.steps_per_quarter


class _Grams:
    """Rolling hashes of every contiguous run of a list of key sequences."""

    def __init__(self, sequences: list[np.ndarray]):
        self.lengths = np.array([len(s) for s in sequences], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)])
        keys = np.concatenate(sequences) if sequences else np.zeros(0, np.uint64)
        n = len(keys)
        inverse = pow(_BASE, -1, 2**64)
        power = np.cumprod(np.full(n + 1, _BASE, np.uint64)) if n else np.ones(1, np.uint64)
        self.power = np.concatenate([[np.uint64(1)], power[:-1]])
        inv = np.cumprod(np.full(n + 1, inverse, np.uint64)) if n else np.ones(1, np.uint64)
        self.inv_power = np.concatenate([[np.uint64(1)], inv[:-1]])
        self.prefix = np.concatenate(
            [[np.uint64(0)], np.cumsum(keys.astype(np.uint64) * self.power[:n])]
        )
        self.owner = np.repeat(np.arange(len(sequences)), self.lengths)

    def grams(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of every run of ``length`` keys inside one sequence, and its sequence."""
        start = np.arange(len(self.owner))
        ok = start + length <= self.starts[self.owner + 1]
        start = start[ok]
        h = (self.prefix[start + length] - self.prefix[start]) * self.inv_power[start]
        return h, self.owner[ok]


def _found(queries: _Grams, corpus_set: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    h, owner = queries.grams(length)
    if not len(corpus_set):
        return np.zeros(len(h), bool), owner
    i = np.minimum(np.searchsorted(corpus_set, h), len(corpus_set) - 1)
    return corpus_set[i] == h, owner


def longest_runs(queries: list[np.ndarray], corpus: list[np.ndarray]) -> np.ndarray:
    """For each query key sequence, the length of its longest contiguous run that also
    occurs contiguously in some corpus sequence."""
    q, c = _Grams(queries), _Grams(corpus)
    cache: dict[int, np.ndarray] = {}

    def hit(length: int) -> np.ndarray:
        if length not in cache:
            cache[length] = np.unique(c.grams(length)[0])
        found, owner = _found(q, cache[length], length)
        return np.bincount(owner[found], minlength=len(queries)) > 0

    best = np.zeros(len(queries), np.int64)
    alive, length = q.lengths >= 1, 1
    while alive.any():  # 1, 2, 4, ...: the largest power of two found
        found = hit(length) & alive
        best[found] = length
        alive = found & (q.lengths >= 2 * length)
        length *= 2
    lo, hi = best.copy(), np.where(best > 0, np.minimum(2 * best - 1, q.lengths), 0)
    while (lo < hi).any():  # bisection inside [best, 2 * best)
        mid = (lo + hi + 1) // 2
        for value in np.unique(mid[lo < hi]):
            which = (lo < hi) & (mid == value)
            found = hit(int(value))
            lo = np.where(which & found, value, lo)
            hi = np.where(which & ~found, value - 1, hi)
    return lo


def window_hits(
    queries: list[np.ndarray], corpus: list[np.ndarray], steps: int
) -> list[np.ndarray]:
    """For each query, whether each run of ``steps`` keys occurs in some corpus sequence."""
    q, c = _Grams(queries), _Grams(corpus)
    found, owner = _found(q, np.unique(c.grams(steps)[0]), steps)
    return [found[owner == i] for i in range(len(queries))]


def memorization(
    samples: list[Notes], training: list[Notes], window_bars: int = 4, threshold: float = 0.5
) -> dict:
    """How much of each sample is copied from ``training``.

    Returns per-sample lists (``longest_notes``, ``longest_bars``, ``window_share``, the
    share of the sample's non-empty ``window_bars``-bar windows found in training, None for
    samples shorter than a window, and ``flagged``: window share >= ``threshold``) and their
    summary.
    """
    longest_notes = (
        longest_runs([note_steps(s) for s in samples], [note_steps(t) for t in training]) + 1
    )
    longest_notes = np.where([len(s) > 0 for s in samples], longest_notes, 0)
    train_bars = [bar_steps(t) for t in training]
    sample_bars = [bar_steps(s) for s in samples]
    longest_bars = longest_runs(sample_bars, train_bars) + 1
    contents = [bar_contents(s)[0] for s in samples]
    train_contents = np.unique(np.concatenate([bar_contents(t)[0] for t in training] or [[]]))
    any_bar = np.array([np.isin(c, train_contents).any() for c in contents])
    longest_bars = np.where(longest_bars > 1, longest_bars, any_bar.astype(np.int64))
    hits = window_hits(sample_bars, train_bars, window_bars - 1)
    shares = []
    for c, found in zip(contents, hits, strict=True):
        windows = (
            np.lib.stride_tricks.sliding_window_view(c, window_bars)
            if len(c) >= window_bars
            else None
        )
        if windows is None:
            shares.append(None)
            continue
        real = ~(windows == np.uint64(_EMPTY_BAR)).all(axis=1)
        shares.append(float(found[real].mean()) if real.any() else None)
    flagged = [s is not None and s >= threshold for s in shares]
    known = [s for s in shares if s is not None]
    return {
        "window_bars": window_bars,
        "threshold": threshold,
        "longest_notes": longest_notes.tolist(),
        "longest_bars": longest_bars.tolist(),
        "window_share": shares,
        "flagged": [i for i, f in enumerate(flagged) if f],
        "summary": {
            "longest_notes_median": float(np.median(longest_notes)) if len(samples) else None,
            "longest_notes_max": int(longest_notes.max()) if len(samples) else None,
            "longest_bars_median": float(np.median(longest_bars)) if len(samples) else None,
            "longest_bars_max": int(longest_bars.max()) if len(samples) else None,
            "window_share_mean": float(np.mean(known)) if known else None,
            "flagged": int(sum(flagged)),
            "flagged_share": float(np.mean(flagged)) if len(samples) else None,
        },
    }


def diversity(pieces: list[Notes], window_bars: int = 4) -> dict:
    """How alike the pieces of one set are: mean Jaccard distance between their sets of bar
    contents (transposition-free), the share of pairs sharing a ``window_bars``-bar window,
    and the pairs that are identical."""
    n = len(pieces)
    if n < 2:
        return {
            "pieces": n,
            "bar_jaccard_distance_mean": None,
            "pairs_sharing_window": None,
            "identical_pairs": 0,
        }
    bar_sets = [np.unique(bar_contents(p)[0]) for p in pieces]
    window_sets = [np.unique(_Grams([bar_steps(p)]).grams(window_bars - 1)[0]) for p in pieces]
    jaccard = _jaccard_distances(bar_sets)
    shared = _intersections(window_sets)
    upper = np.triu_indices(n, k=1)
    full = [
        (p.time.tobytes(), p.pitch.tobytes(), p.duration.tobytes(), p.program.tobytes())
        for p in pieces
    ]
    identical = sum(full[i] == full[j] for i, j in zip(*upper, strict=True))
    return {
        "pieces": n,
        "bar_jaccard_distance_mean": float(jaccard[upper].mean()),
        "pairs_sharing_window": float((shared[upper] > 0).mean()),
        "identical_pairs": int(identical),
    }


def _intersections(sets: list[np.ndarray]) -> np.ndarray:
    """Pairwise sizes of the intersections of sets of unique keys."""
    universe, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    incidence = np.zeros((len(sets), len(universe)), np.float64)
    incidence[rows, inverse] = 1
    return incidence @ incidence.T


def _jaccard_distances(sets: list[np.ndarray]) -> np.ndarray:
    """Pairwise Jaccard distances 1 - |a & b| / |a | b| (0 between two empty sets)."""
    inter = _intersections(sets)
    size = np.array([len(s) for s in sets], np.float64)
    union = size[:, None] + size[None, :] - inter
    return 1 - np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
