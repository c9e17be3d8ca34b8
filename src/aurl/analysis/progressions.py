"""Chord progressions: chord spans, transition statistics, common progressions and cadences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from aurl.analysis.chords import QUALITY_NAMES, Chords
from aurl.analysis.roman import roman_numeral

_DOMINANT = ("maj", "dom7")
_LEADING = ("dim", "dim7", "hdim7")


@dataclass(frozen=True)
class Span:
    """Consecutive beats holding one chord.

    Attributes:
        first: Index of its first beat.
        end: Index after its last beat.
        root: Root pitch class.
        quality: Quality name.
        inversion: Inversion at its first beat.
        key: Local key index at its first beat.
        degree: Roman numeral in root position (for statistics), e.g. ``"V7"``.
        numeral: Roman numeral with its inversion figure, e.g. ``"V65"``.
    """

    first: int
    end: int
    root: int
    quality: str
    inversion: int
    key: int
    degree: str
    numeral: str


def chord_spans(chords: Chords, keys: np.ndarray) -> list[Span]:
    """Merge consecutive beats with the same root and quality (silent beats are dropped)."""
    same = (chords.root[1:] == chords.root[:-1]) & (chords.quality[1:] == chords.quality[:-1])
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    ends = np.append(starts[1:], len(chords))
    spans = []
    for a, b in zip(starts, ends, strict=True):
        root, q = int(chords.root[a]), int(chords.quality[a])
        if root < 0:
            continue
        k = int(keys[a])
        tonic, mode = k % 12, "major" if k < 12 else "minor"
        quality = QUALITY_NAMES[q]
        inv = int(chords.inversion[a])
        spans.append(
            Span(
                int(a),
                int(b),
                root,
                quality,
                inv,
                k,
                roman_numeral(root, quality, 0, tonic, mode),
                roman_numeral(root, quality, inv, tonic, mode),
            )
        )
    return spans


def transition_counts(sequences: list[list[str]], top: int = 12) -> dict:
    """Chord-to-chord transition counts over the ``top`` commonest labels (rest: ``"other"``).

    Returns:
        ``{"labels": [...], "counts": [[...]]}``, rows the chord left, columns the chord reached.
    """
    freq = Counter(label for seq in sequences for label in seq)
    labels = [label for label, _ in freq.most_common(top)]
    if len(freq) > top:
        labels.append("other")
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), np.int64)
    for seq in sequences:
        ids = [index.get(label, len(labels) - 1) for label in seq]
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            counts[a, b] += 1
    return {"labels": labels, "counts": counts.tolist()}


def common_progressions(sequences: list[list[str]], lengths=(2, 3, 4), top: int = 10) -> dict:
    """The commonest chord n-grams, ``{"3": [{"chords": [...], "count": n}, ...], ...}``."""
    out = {}
    for n in lengths:
        grams = Counter(tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1))
        out[str(n)] = [{"chords": list(g), "count": c} for g, c in grams.most_common(top)]
    return out


def classify_cadence(before: Span, arrival: Span, soprano_pc: int) -> str | None:
    """The cadence formed by two chords, named in the arrival chord's key, or None.

    Authentic: V or viio to I (perfect when both are in root position and the soprano ends
    on the tonic). Plagal: IV to I. Deceptive: V to vi (VI in minor). Half: ending on V in root position.
    """
    tonic = arrival.key % 12
    minor = arrival.key >= 12
    to = (arrival.root - tonic) % 12
    frm = (before.root - tonic) % 12
    tonic_arrival = to == 0 and arrival.quality in ("maj", "min")
    dominant_before = (frm == 7 and before.quality in _DOMINANT) or (
        frm == 11 and before.quality in _LEADING
    )
    if tonic_arrival and dominant_before:
        perfect = before.inversion == 0 and arrival.inversion == 0 and soprano_pc == tonic
        return "perfect authentic" if perfect else "imperfect authentic"
    if tonic_arrival and frm == 5 and before.quality in ("maj", "min"):
        return "plagal"
    if frm == 7 and before.quality in _DOMINANT and to == (8 if minor else 9):
        return "deceptive"
    if to == 7 and arrival.quality in _DOMINANT and arrival.inversion == 0:
        return "half"
    return None


def find_cadences(spans: list[Span], arrival_beats: list[int], soprano: np.ndarray) -> list[dict]:
    """Cadences at the given beats (phrase endings): the chord there and the one before it.

    Args:
        spans: Chord spans of the piece.
        arrival_beats: Beat index of the last melody note of every phrase.
        soprano: Highest pitch at every beat (-1 where silent).

    Returns:
        ``{"type", "beat", "chords"}`` for every phrase ending that forms a cadence.
    """
    if not spans:
        return []
    firsts = np.array([s.first for s in spans])
    out = []
    for beat in arrival_beats:
        i = int(np.searchsorted(firsts, beat, side="right") - 1)
        if i < 1:
            continue
        arrival, before = spans[i], spans[i - 1]
        kind = classify_cadence(before, arrival, int(soprano[arrival.first]) % 12)
        if kind:
            out.append(
                {
                    "type": kind,
                    "beat": int(arrival.first),
                    "chords": [before.numeral, arrival.numeral],
                }
            )
    return out
