"""Melody: the top voice, its phrases, contour, intervals, recurring motifs, and scale or mode."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.key import PITCH_NAMES
from aurl.analysis.piece import Piece

# Scales as pitch-class sets above the tonic, most specific first within equal sizes.
SCALES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("major pentatonic", (0, 2, 4, 7, 9)),
    ("minor pentatonic", (0, 3, 5, 7, 10)),
    ("major (ionian)", (0, 2, 4, 5, 7, 9, 11)),
    ("natural minor (aeolian)", (0, 2, 3, 5, 7, 8, 10)),
    ("dorian", (0, 2, 3, 5, 7, 9, 10)),
    ("phrygian", (0, 1, 3, 5, 7, 8, 10)),
    ("lydian", (0, 2, 4, 6, 7, 9, 11)),
    ("mixolydian", (0, 2, 4, 5, 7, 9, 10)),
    ("locrian", (0, 1, 3, 5, 6, 8, 10)),
    ("harmonic minor", (0, 2, 3, 5, 7, 8, 11)),
    ("melodic minor", (0, 2, 3, 5, 7, 9, 11)),
    ("minor (natural, harmonic and melodic)", (0, 2, 3, 5, 7, 8, 9, 10, 11)),
    ("blues", (0, 3, 5, 6, 7, 10)),
    ("chromatic", tuple(range(12))),
)
CONTOURS = {
    (1, 1): "ascending",
    (-1, -1): "descending",
    (1, -1): "arch",
    (-1, 1): "bow",
    (0, 0): "horizontal",
    (0, 1): "horizontal-ascending",
    (0, -1): "horizontal-descending",
    (1, 0): "ascending-horizontal",
    (-1, 0): "descending-horizontal",
}
_MAX_INTERVAL = 24
_BASE = 2 * _MAX_INTERVAL + 1


@dataclass(frozen=True)
class Melody:
    """The top voice as monophonic notes (times and durations in steps)."""

    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


def top_voice(piece: Piece) -> Melody:
    """The highest note at every onset, skipping notes that start under a held higher note.

    Durations are cut at the next kept onset, so the result never overlaps itself.
    """
    time, pitch, end = piece.time, piece.pitch, piece.time + piece.duration
    last_of_onset = np.append(time[1:] != time[:-1], True)  # sorted by time then pitch
    idx = np.flatnonzero(last_of_onset)
    keep: list[int] = []
    for i in idx:
        if keep and end[keep[-1]] > time[i] and pitch[keep[-1]] > pitch[i]:
            continue
        keep.append(int(i))
    k = np.asarray(keep, np.int64)
    t, p = time[k], pitch[k]
    d = np.minimum(piece.duration[k], np.append(np.diff(t), piece.duration[k][-1:]))
    return Melody(t, np.maximum(d, 1), p)


def contour_class(pitches: np.ndarray, threshold: float = 1.0) -> str:
    """Huron's contour class from the first pitch, the mean of the middle ones and the last.

    Differences within ``threshold`` semitones count as level.
    """
    p = np.asarray(pitches, float)
    if len(p) == 0:
        return "horizontal"
    middle = p[1:-1].mean() if len(p) > 2 else (p[0] + p[-1]) / 2
    signs = []
    for a, b in ((p[0], middle), (middle, p[-1])):
        d = b - a
        signs.append(0 if abs(d) <= threshold else int(np.sign(d)))
    return CONTOURS[(signs[0], signs[1])]


def interval_histogram(melody: Melody) -> dict[str, int]:
    """Counts of melodic intervals in semitones (-12..12, plus larger leaps grouped)."""
    iv = np.diff(melody.pitch)
    counts = {
        str(k): int(n)
        for k, n in zip(*np.unique(np.clip(iv, -13, 13), return_counts=True), strict=True)
    }
    out = {str(k): counts.get(str(k), 0) for k in range(-12, 13)}
    out["< -12"] = counts.get("-13", 0)
    out["> 12"] = counts.get("13", 0)
    return out


def phrase_boundaries(melody: Melody, min_notes: int = 4) -> np.ndarray:
    """Indices of melody notes that start a new phrase (the first is always 0).

    A simplified local-boundary-detection model: the strength of the gap after each note
    grows with its inter-onset time, its rest and the leap across it, each measured against
    its neighbours. Boundaries are strong gaps (above mean + 0.5 std) that are local maxima,
    at least ``min_notes`` notes apart.
    """
    n = len(melody)
    if n < 2 * min_notes:
        return np.zeros(1, np.int64)
    ioi = np.diff(melody.time).astype(float)
    rest = np.maximum(melody.time[1:] - (melody.time[:-1] + melody.duration[:-1]), 0).astype(float)
    leap = np.abs(np.diff(melody.pitch)).astype(float)
    strength = 0.5 * _change(ioi) + 0.3 * _change(rest) + 0.2 * _change(leap)
    cut = strength.mean() + 0.5 * strength.std()
    peak = np.ones(len(strength), bool)
    peak[1:] &= strength[1:] >= strength[:-1]
    peak[:-1] &= strength[:-1] >= strength[1:]
    candidates = np.flatnonzero(peak & (strength > cut))
    starts = [0]
    for g in candidates[np.argsort(-strength[candidates], kind="stable")]:
        s = int(g) + 1
        if s < n - min_notes + 1 and all(abs(s - b) >= min_notes for b in starts):
            starts.append(s)
    return np.asarray(sorted(starts), np.int64)


def _change(x: np.ndarray) -> np.ndarray:
    """LBDM boundary strength of each value against its neighbours, scaled to 0..1."""
    prev = np.append(x[:1], x[:-1])
    nxt = np.append(x[1:], x[-1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        r1 = np.where(x + prev > 0, np.abs(x - prev) / (x + prev), 0.0)
        r2 = np.where(x + nxt > 0, np.abs(x - nxt) / (x + nxt), 0.0)
    s = x * (r1 + r2)
    top = s.max() if len(s) else 0
    return s / top if top > 0 else s


@dataclass(frozen=True)
class Motif:
    """An interval pattern that recurs in the melody.

    Attributes:
        intervals: Semitone steps between its notes.
        starts: Index of the first melody note of every (non-overlapping) occurrence.
    """

    intervals: tuple[int, ...]
    starts: tuple[int, ...]


def find_motifs(
    melody: Melody, min_len: int = 3, max_len: int = 16, min_count: int = 2, limit: int = 10
) -> list[Motif]:
    """Recurring interval patterns, longest and most frequent first.

    Patterns of ``min_len`` to ``max_len`` intervals are hashed and counted at once per
    length. A pattern is kept if it occurs ``min_count`` times without overlapping itself,
    is not all repeated notes, and is not just a part of an already kept longer pattern at
    the same places.
    """
    iv = np.clip(np.diff(melody.pitch), -_MAX_INTERVAL, _MAX_INTERVAL) + _MAX_INTERVAL
    found: list[Motif] = []
    spans: list[tuple[int, int]] = []  # occurrences of kept patterns, (first note, end note)
    for length in range(min(max_len, len(iv)), min_len - 1, -1):
        windows = np.lib.stride_tricks.sliding_window_view(iv, length)
        codes = windows @ (_BASE ** np.arange(length, dtype=np.int64))
        _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        for u in np.flatnonzero(counts >= min_count):
            where = np.flatnonzero(inverse == u)
            starts = _non_overlapping(where, length)
            pattern = tuple(int(x) - _MAX_INTERVAL for x in windows[where[0]])
            if len(starts) < min_count or not any(pattern):
                continue
            if all(any(a <= s and s + length <= b for a, b in spans) for s in starts):
                continue  # only ever heard inside a longer motif
            found.append(Motif(pattern, tuple(starts)))
            spans.extend((s, s + length) for s in starts)
        if len(found) >= 4 * limit:
            break
    found.sort(key=lambda m: (-len(m.starts) * len(m.intervals), -len(m.intervals)))
    return found[:limit]


def _non_overlapping(starts: np.ndarray, length: int) -> list[int]:
    out: list[int] = []
    for s in starts:
        if not out or s >= out[-1] + length:
            out.append(int(s))
    return out


def scale_of(melody: Melody, key_tonic: int | None = None) -> dict:
    """The scale or mode that best covers the melody's pitch classes (duration-weighted).

    Every scale on every tonic is scored by the share of the melody inside it, less a little
    per scale note (smaller scales win when they cover as much); the key's tonic, when given,
    is preferred.
    """
    hist = np.bincount(melody.pitch % 12, weights=melody.duration, minlength=12).astype(float)
    total = max(hist.sum(), 1e-9)
    best = None
    for name, steps in SCALES:
        for tonic in range(12):
            pcs = [(tonic + s) % 12 for s in steps]
            coverage = hist[pcs].sum() / total
            score = coverage - 0.01 * len(steps) + (0.02 if tonic == key_tonic else 0.0)
            if best is None or score > best[0] + 1e-12:
                best = (score, name, tonic, coverage, pcs)
    _, name, tonic, coverage, pcs = best
    outside = [PITCH_NAMES[pc] for pc in range(12) if hist[pc] > 0 and pc not in pcs]
    return {
        "name": f"{PITCH_NAMES[tonic]} {name}",
        "tonic": PITCH_NAMES[tonic],
        "scale": name,
        "coverage": round(float(coverage), 4),
        "outside": outside,
    }
