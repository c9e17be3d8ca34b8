"""Structure: bar self-similarity, repeated sections, a form label and an intensity curve.

Each bar is described by its onsets (pitch x 16 positions in the bar) and its pitch-class
durations; two bars are as similar as the mean cosine of those two descriptions. Repeats are
runs along the diagonals of the similarity matrix; their starts and ends cut the piece into
sections, and sections that match earlier ones get the same letter (``AABA``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from aurl.analysis.chroma import chroma, overlaps
from aurl.analysis.piece import Piece

SLOTS = 16  # onset positions per bar


@dataclass(frozen=True)
class Repeat:
    """Bars ``first..first+length-1`` sound again at ``second..second+length-1`` (0-based)."""

    first: int
    second: int
    length: int
    similarity: float


@dataclass(frozen=True)
class Section:
    """Bars ``start..end-1`` (0-based) with a form letter."""

    start: int
    end: int
    label: str


def bar_bounds(piece: Piece) -> np.ndarray:
    """Bar boundaries in steps covering all notes (``n_bars + 1`` values)."""
    return np.append(piece.bar_starts, max(piece.end, int(piece.bar_starts[-1]) + 1))


def bar_similarity(piece: Piece) -> np.ndarray:
    """Bar-by-bar self-similarity in ``[0, 1]``, shape ``(n_bars, n_bars)``."""
    bounds = bar_bounds(piece)
    n = len(bounds) - 1
    bar = np.clip(np.searchsorted(bounds, piece.time, side="right") - 1, 0, n - 1)
    length = (bounds[bar + 1] - bounds[bar]).astype(float)
    slot = np.clip(((piece.time - bounds[bar]) / length * SLOTS).astype(np.int64), 0, SLOTS - 1)
    onsets = np.zeros((n, SLOTS * 128))
    np.add.at(onsets, (bar, slot * 128 + piece.pitch), 1.0)
    pcs = chroma(piece, overlaps(piece, bounds))
    sim = 0.5 * _cosine(onsets) + 0.5 * _cosine(pcs)
    empty = (onsets.sum(1) == 0) & (pcs.sum(1) == 0)
    sim[np.ix_(empty, empty)] = 1.0
    return np.clip(sim, 0.0, 1.0)


def _cosine(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return unit @ unit.T


def find_repeats(sim: np.ndarray, threshold: float = 0.8, min_len: int = 2) -> list[Repeat]:
    """Runs of at least ``min_len`` bars along each off-diagonal with similarity >= threshold.

    Returned longest first. A run that overlaps itself (a bar repeated many times) is kept;
    the form labelling decides what it means.
    """
    n = len(sim)
    out = []
    for lag in range(1, n):
        diag = np.diagonal(sim, lag)
        good = np.concatenate([[False], diag >= threshold, [False]])
        edges = np.flatnonzero(np.diff(good.astype(np.int8)))
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if b - a >= min_len:
                out.append(
                    Repeat(int(a), int(a + lag), int(b - a), round(float(diag[a:b].mean()), 4))
                )
    out.sort(key=lambda r: (-r.length, r.first, r.second))
    return out


def sections(
    sim: np.ndarray, repeats: list[Repeat], threshold: float = 0.8, min_len: int = 2
) -> list[Section]:
    """Cut the piece at the ends of repeats and give matching sections the same letter.

    The longest repeats are used first, down to half the longest; a cut closer than
    ``min_len`` bars to an earlier one is dropped. A section takes the letter of the first earlier section whose bars it
    matches (mean similarity along the diagonal from both starts >= ``threshold``, lengths
    within a third of each other); otherwise a new letter.
    """
    n = len(sim)
    cuts = {0, n}
    longest = repeats[0].length if repeats else 0
    for r in repeats[:12]:
        if r.length < max(min_len, longest // 2):
            break
        # The second copy's start first: when the copies overlap (a pickup bar shared by the
        # end of one pass and the start of the next), the repeat starts there.
        for c in (r.first, r.second, r.second + r.length, r.first + r.length):
            if all(abs(c - x) >= min_len for x in cuts):
                cuts.add(c)
    bounds = sorted(cuts)
    out: list[Section] = []
    letters = iter(string.ascii_uppercase + string.ascii_lowercase)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        label = None
        for prev in out:
            la, lb = prev.end - prev.start, b - a
            if min(la, lb) < 0.75 * max(la, lb):
                continue
            k = min(la, lb)
            if (
                np.mean(sim[np.arange(prev.start, prev.start + k), np.arange(a, a + k)])
                >= threshold
            ):
                label = prev.label
                break
        out.append(Section(a, b, label or next(letters, "?")))
    return out


def form_label(parts: list[Section]) -> str:
    """The letters of the sections in order, e.g. ``"AABA"``."""
    return "".join(s.label for s in parts)


def intensity(piece: Piece, smooth: int = 3) -> dict[str, np.ndarray]:
    """Per-bar density (onsets per beat), loudness (mean velocity), register (mean pitch).

    ``intensity`` is the mean of the three, each scaled to 0..1 over the piece, smoothed over
    ``smooth`` bars.
    """
    bounds = bar_bounds(piece)
    n = len(bounds) - 1
    bar = np.clip(np.searchsorted(bounds, piece.time, side="right") - 1, 0, n - 1)
    count = np.bincount(bar, minlength=n).astype(float)
    beats = np.diff(bounds) / np.maximum(piece.beat_steps, 1)
    density = count / np.maximum(beats, 1e-9)
    safe = np.maximum(count, 1)
    loudness = np.bincount(bar, weights=piece.velocity, minlength=n) / safe
    register = np.bincount(bar, weights=piece.pitch, minlength=n) / safe
    parts = [_scale(x, count > 0) for x in (density, loudness, register)]
    raw = np.mean(parts, axis=0)
    kernel = np.ones(smooth) / smooth
    padded = np.pad(raw, smooth // 2, mode="edge")
    curve = np.convolve(padded, kernel, mode="valid")[:n]
    return {"density": density, "loudness": loudness, "register": register, "intensity": curve}


def _scale(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if not valid.any():
        return np.zeros_like(x)
    lo, hi = x[valid].min(), x[valid].max()
    out = (x - lo) / (hi - lo) if hi > lo else np.full_like(x, 0.5)
    return np.where(valid, out, 0.0)
