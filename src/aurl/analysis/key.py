"""Key finding: the global key and local keys over time.

Keys are matched by correlating duration-weighted pitch-class histograms with key profiles
(Krumhansl-Kessler, Temperley, Albrecht-Shanahan), rotated to all 24 keys. Local keys come
from histograms over a sliding window of beats; a Viterbi pass over the 24 keys with a
penalty per key change keeps them from flickering.

A key index is 0-11 for the major keys on C..B and 12-23 for the minor keys on c..b.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from aurl.tokens.vocab import PITCH_NAMES  # noqa: F401  (re-exported for the analysis)

PROFILES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "krumhansl": (
        (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
        (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
    ),
    "temperley": (
        (0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400),
        (0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330),
    ),
    "albrecht": (
        (0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081),
        (0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052),
    ),
}
DEFAULT_PROFILE = "albrecht"

MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_NAMES = ("c", "c#", "d", "eb", "e", "f", "f#", "g", "g#", "a", "bb", "b")


@dataclass(frozen=True)
class Key:
    """A key with how sure the finder is of it.

    Attributes:
        tonic: Pitch class of the tonic (0 = C).
        mode: ``"major"`` or ``"minor"``.
        correlation: Pearson correlation of the histogram with this key's profile.
        confidence: Margin over the runner-up key, in correlation plus any final-bass bonus
            (0 = a tie).
    """

    tonic: int
    mode: str
    correlation: float = 0.0
    confidence: float = 0.0

    @property
    def index(self) -> int:
        """0-11 major, 12-23 minor."""
        return self.tonic + (12 if self.mode == "minor" else 0)

    @property
    def name(self) -> str:
        """For example ``"G major"`` or ``"f# minor"``."""
        return key_name(self.index)


def key_name(index: int) -> str:
    """Name of key ``index`` (0-11 major on C..B, 12-23 minor)."""
    if index < 12:
        return f"{MAJOR_NAMES[index]} major"
    return f"{MINOR_NAMES[index - 12]} minor"


@functools.cache
def profile_matrix(profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """The named profile rotated to all 24 keys, z-scored, shape ``(24, 12)`` (read-only,
    computed once per profile).

    Raises:
        ValueError: For an unknown profile name.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown key profile {profile!r}; choose from {', '.join(PROFILES)}")
    major, minor = (np.asarray(p, float) for p in PROFILES[profile])
    rows = [np.roll(major, k) for k in range(12)] + [np.roll(minor, k) for k in range(12)]
    m = np.stack(rows)
    m = (m - m.mean(1, keepdims=True)) / m.std(1, keepdims=True)
    m.flags.writeable = False
    return m


def key_correlations(hist: np.ndarray, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Pearson correlation of each histogram with each key, shape ``(..., 24)``.

    Rows of ``hist`` that are flat (silence) correlate 0 with every key. Each row is
    computed on its own (products summed along the row, not a matrix product whose
    rounding depends on how many rows come along), so a histogram gets the same values
    alone or in a batch.
    """
    hist = np.asarray(hist, float)
    centred = hist - hist.mean(-1, keepdims=True)
    norm = np.sqrt((centred**2).mean(-1, keepdims=True))
    z = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
    return (z[..., None, :] * profile_matrix(profile)).sum(-1) / 12.0


def find_key(
    hist: np.ndarray,
    profile: str = DEFAULT_PROFILE,
    final_bass: int = -1,
    final_bonus: float = 0.1,
) -> Key:
    """The best key for one pitch-class histogram (12 values).

    Args:
        hist: Pitch-class durations.
        profile: Key profile name.
        final_bass: Pitch class of the piece's last bass note (-1 if unknown); keys with this
            tonic get ``final_bonus`` added to their correlation, since tonal pieces nearly
            always end on the tonic. This settles relative major/minor near-ties.
        final_bonus: See ``final_bass``.

    Raises:
        ValueError: If the histogram is empty.
    """
    if not np.any(np.asarray(hist) > 0):
        raise ValueError("cannot find a key: no notes")
    return find_keys(np.asarray(hist)[None], profile, np.array([final_bass]), final_bonus)[0]


def find_keys(
    hists: np.ndarray,
    profile: str = DEFAULT_PROFILE,
    final_bass: np.ndarray | None = None,
    final_bonus: float = 0.1,
) -> list[Key]:
    """:func:`find_key` for each row of ``hists`` (shape ``(n, 12)``), at once.

    ``final_bass`` holds each row's final bass pitch class (-1 if unknown), or is None.
    Rows without notes get the key that correlates best with silence (C major, 0); leave
    them out where that matters.
    """
    corr = key_correlations(hists, profile)
    score = corr.copy()
    if final_bass is not None:
        score += final_bonus * (np.arange(24) % 12 == np.asarray(final_bass)[:, None])
    order = np.argsort(-score, axis=-1)
    rows = np.arange(len(score))
    best, second = order[:, 0], order[:, 1]
    confidence = score[rows, best] - score[rows, second]
    return [
        Key(
            tonic=int(b) % 12,
            mode="major" if b < 12 else "minor",
            correlation=round(float(c), 4),
            confidence=round(float(m), 4),
        )
        for b, c, m in zip(
            best.tolist(), corr[rows, best].tolist(), confidence.tolist(), strict=True
        )  # fmt: skip
    ]


def window_sums(values: np.ndarray, half_width: int) -> np.ndarray:
    """Sum of the rows ``i - half_width .. i + half_width`` (clipped) for every row ``i``."""
    n = len(values)
    cum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(values, 0)])
    idx = np.arange(n)
    lo = np.clip(idx - half_width, 0, n)
    hi = np.clip(idx + half_width + 1, 0, n)
    return cum[hi] - cum[lo]


def viterbi(scores: np.ndarray, switch_penalty: float) -> np.ndarray:
    """The state path maximizing the summed scores minus ``switch_penalty`` per change.

    Args:
        scores: ``(T, S)`` score of every state at every step.
        switch_penalty: Cost of changing state between two steps.

    Returns:
        int64 array of T states.
    """
    n, s = scores.shape
    back = np.zeros((n, s), np.int64)
    total = scores[0].copy()
    for t in range(1, n):
        best = int(np.argmax(total))
        stay = total
        move = total[best] - switch_penalty
        back[t] = np.where(stay >= move, np.arange(s), best)
        total = np.maximum(stay, move) + scores[t]
    path = np.zeros(n, np.int64)
    path[-1] = int(np.argmax(total))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def local_keys(
    beat_chroma: np.ndarray,
    profile: str = DEFAULT_PROFILE,
    half_width: int = 4,
    switch_penalty: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The key of every beat.

    Args:
        beat_chroma: ``(n_beats, 12)`` pitch-class durations per beat.
        profile: Key profile name.
        half_width: Beats on each side of a beat in its window.
        switch_penalty: Cost of a key change, in summed correlation.

    Returns:
        ``(keys, margin)``: the key index of every beat, and by how much (in correlation)
        its window prefers the chosen key over the best other key (negative where the
        smoothing overruled the window).
    """
    if len(beat_chroma) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    corr = key_correlations(window_sums(beat_chroma, half_width), profile)
    path = viterbi(corr, switch_penalty)
    chosen = corr[np.arange(len(path)), path]
    others = corr.copy()
    others[np.arange(len(path)), path] = -np.inf
    return path, chosen - others.max(1)


def key_segments(keys: np.ndarray, margin: np.ndarray) -> list[tuple[int, int, int, float]]:
    """Runs of equal keys as ``(first beat, end beat, key index, mean margin)``."""
    if len(keys) == 0:
        return []
    change = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(keys)]])
    return [
        (int(a), int(b), int(keys[a]), round(float(margin[a:b].mean()), 4))
        for a, b in zip(starts, ends, strict=True)
    ]
