"""Chord recognition: one chord per segment (usually a beat) by template matching.

Every segment's pitch-class durations are scored against 12 roots x the qualities below:
chord tones present count for, other notes against, missing chord tones cost a little,
a bass on the root and a chord that belongs to the local key help. A Viterbi pass with a
small cost per chord change then lets clear neighbours settle ambiguous beats (passing
notes, a lone third).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.chroma import chroma, extreme_pitch, overlaps, sounding_at_start
from aurl.analysis.key import PITCH_NAMES, viterbi
from aurl.analysis.piece import Piece

# Name, intervals above the root, prior (simpler chords win ties).
QUALITIES: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("maj", (0, 4, 7), 0.06),
    ("min", (0, 3, 7), 0.05),
    ("dim", (0, 3, 6), 0.0),
    ("aug", (0, 4, 8), -0.08),
    ("dom7", (0, 4, 7, 10), 0.03),
    ("maj7", (0, 4, 7, 11), -0.04),
    ("min7", (0, 3, 7, 10), -0.01),
    ("hdim7", (0, 3, 6, 10), 0.0),
    ("dim7", (0, 3, 6, 9), 0.0),
    ("sus4", (0, 5, 7), -0.2),
)
QUALITY_NAMES = tuple(q[0] for q in QUALITIES)
SYMBOL_SUFFIX = {"maj": "", "min": "m", "dim": "dim", "aug": "aug", "dom7": "7", "maj7": "maj7",
                 "min7": "m7", "hdim7": "m7b5", "dim7": "dim7", "sus4": "sus4"}  # fmt: skip
TRIAD_OF = {"maj": "maj", "min": "min", "dim": "dim", "aug": "aug", "dom7": "maj", "maj7": "maj",
            "min7": "min", "hdim7": "dim", "dim7": "dim", "sus4": "sus4"}  # fmt: skip

# Diatonic chords (root degree, quality) of each mode; minor uses harmonic-minor dominants.
_DIATONIC = {
    "major": {(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"),
              (11, "dim"), (0, "maj7"), (2, "min7"), (4, "min7"), (5, "maj7"), (7, "dom7"),
              (9, "min7"), (11, "hdim7"), (11, "dim7")},
    "minor": {(0, "min"), (2, "dim"), (3, "maj"), (5, "min"), (7, "maj"), (8, "maj"),
              (10, "maj"), (11, "dim"), (0, "min7"), (2, "hdim7"), (3, "maj7"), (5, "min7"),
              (7, "dom7"), (8, "maj7"), (10, "dom7"), (11, "dim7")},
}  # fmt: skip


@dataclass(frozen=True)
class ChordParams:
    """Weights of the chord score (see the module docstring)."""

    held_weight: float = 2.0  # extra weight for notes sounding at the segment's start
    absent_cost: float = 0.5  # per fraction of chord tones missing
    bass_bonus: float = 0.12  # the bass note is the root
    diatonic_bonus: float = 0.12  # the chord belongs to the local key
    change_cost: float = 0.08  # Viterbi cost per chord change
    present_fraction: float = 0.08  # a pitch class under this share of the segment is absent
    passing_seventh_cost: float = 0.3  # a seventh that does not sound at the segment's start


@dataclass(frozen=True)
class Chords:
    """One chord per segment.

    Attributes:
        starts: Segment starts in steps.
        ends: Segment ends in steps.
        root: Root pitch class, -1 where the segment is silent.
        quality: Index into ``QUALITY_NAMES``, -1 where silent.
        bass: Bass pitch class, -1 where silent.
        inversion: 0 root position, 1 third, 2 fifth, 3 seventh in the bass; -1 when the
            bass is not a chord tone or the segment is silent.
        soprano: Highest pitch (MIDI), -1 where silent.
        fit: Share of the segment's sound that is chord tones.
    """

    starts: np.ndarray
    ends: np.ndarray
    root: np.ndarray
    quality: np.ndarray
    bass: np.ndarray
    inversion: np.ndarray
    soprano: np.ndarray
    fit: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def template_matrix() -> np.ndarray:
    """Binary chord templates, shape ``(12 * Q, 12)``; row ``q * 12 + root``."""
    rows = np.zeros((len(QUALITIES) * 12, 12))
    for q, (_, intervals, _) in enumerate(QUALITIES):
        for root in range(12):
            rows[q * 12 + root, [(root + i) % 12 for i in intervals]] = 1
    return rows


def diatonic_matrix() -> np.ndarray:
    """Whether each chord belongs to each key, shape ``(24, 12 * Q)``."""
    out = np.zeros((24, len(QUALITIES) * 12))
    for key in range(24):
        tonic, mode = key % 12, "major" if key < 12 else "minor"
        for degree, quality in _DIATONIC[mode]:
            out[key, QUALITY_NAMES.index(quality) * 12 + (tonic + degree) % 12] = 1
    return out


_TEMPLATES = template_matrix()
_DIATONIC_MATRIX = diatonic_matrix()
_SIZES = _TEMPLATES.sum(1)
_PRIORS = np.repeat([q[2] for q in QUALITIES], 12)
_ROOTS = np.tile(np.arange(12), len(QUALITIES))
_SEVENTH_PC = np.zeros((len(QUALITIES) * 12, 12))  # the seventh of every seventh chord
for _q, (_, _iv, _) in enumerate(QUALITIES):
    if len(_iv) == 4:
        _SEVENTH_PC[_q * 12 + np.arange(12), (np.arange(12) + _iv[3]) % 12] = 1


def chord_scores(
    weights: np.ndarray,
    bass: np.ndarray,
    keys: np.ndarray,
    params: ChordParams,
    at_start: np.ndarray | None = None,
) -> np.ndarray:
    """Score every chord for every segment.

    Args:
        weights: ``(n, 12)`` pitch-class weights per segment.
        bass: Bass pitch class per segment (-1 for none).
        keys: Local key index per segment.
        params: Score weights.
        at_start: ``(n, 12)`` whether each pitch class sounds at the segment's start
            (default: all that sound at all).

    Returns:
        ``(n, 12 * Q)`` scores; higher is better.
    """
    total = weights.sum(1, keepdims=True)
    w = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    present = (w >= params.present_fraction).astype(float)
    hit = w @ _TEMPLATES.T
    absent = 1.0 - (present @ _TEMPLATES.T) / _SIZES
    scores = 2 * hit - 1 - params.absent_cost * absent + _PRIORS
    scores += params.bass_bonus * (bass[:, None] == _ROOTS[None, :])
    scores += params.diatonic_bonus * _DIATONIC_MATRIX[keys]
    start = present if at_start is None else np.asarray(at_start, float)
    scores -= params.passing_seventh_cost * ((1 - start) @ _SEVENTH_PC.T)
    return scores


def recognize_chords(
    piece: Piece,
    bounds: np.ndarray,
    keys: np.ndarray,
    params: ChordParams | None = None,
) -> Chords:
    """Label every segment ``[bounds[i], bounds[i + 1])`` with a chord.

    Args:
        piece: The piece.
        bounds: Segment boundaries in steps (usually the beats plus the end).
        keys: Local key index of every segment (see :mod:`aurl.analysis.key`).
        params: Score weights (defaults to :class:`ChordParams`).
    """
    params = params or ChordParams()
    bounds = np.asarray(bounds, np.int64)
    ov = overlaps(piece, bounds)
    weights = chroma(piece, ov, params.held_weight)
    low = extreme_pitch(piece, ov, lowest=True)
    high = extreme_pitch(piece, ov, lowest=False)
    bass = np.where(low >= 0, low % 12, -1)
    struck = sounding_at_start(piece, ov)
    scores = chord_scores(weights, bass, np.asarray(keys, np.int64), params, struck)
    silent = weights.sum(1) == 0
    scores[silent] = 0.0
    best = viterbi(scores, params.change_cost) if len(scores) else np.zeros(0, np.int64)
    root = np.where(silent, -1, _ROOTS[best])
    quality = np.where(silent, -1, best // 12)
    total = np.maximum(weights.sum(1), 1e-9)
    fit = (weights * _TEMPLATES[best]).sum(1) / total
    return Chords(
        starts=bounds[:-1],
        ends=bounds[1:],
        root=root,
        quality=quality,
        bass=bass,
        inversion=inversions(root, quality, bass),
        soprano=high,
        fit=np.where(silent, 0.0, fit),
    )


def inversions(root: np.ndarray, quality: np.ndarray, bass: np.ndarray) -> np.ndarray:
    """Inversion from the bass: the position of the bass among the chord's tones, or -1."""
    out = np.full(len(root), -1, np.int64)
    for q, (_, intervals, _) in enumerate(QUALITIES):
        sel = quality == q
        interval = (bass[sel] - root[sel]) % 12
        pos = np.full(int(sel.sum()), -1, np.int64)
        for i, step in enumerate(intervals):
            pos[interval == step] = i
        out[sel] = pos
    out[(root < 0) | (bass < 0)] = -1
    return out


def chord_symbol(root: int, quality: int, bass: int = -1) -> str:
    """Lead-sheet symbol such as ``"G7"``, ``"F#m/A"``; ``"N"`` for no chord."""
    if root < 0 or quality < 0:
        return "N"
    name = QUALITY_NAMES[quality]
    symbol = PITCH_NAMES[root] + SYMBOL_SUFFIX[name]
    if bass >= 0 and bass != root:
        symbol += "/" + PITCH_NAMES[bass]
    return symbol


def identify(pitches: list[int]) -> tuple[int, str, int]:
    """Root, quality name and inversion of one sounding chord given as MIDI pitches.

    Uses the same scores as :func:`recognize_chords` without key context.
    """
    pcs = np.zeros((1, 12))
    for p in pitches:
        pcs[0, p % 12] += 1
    bass = np.array([min(pitches) % 12])
    params = ChordParams(diatonic_bonus=0.0)
    best = int(np.argmax(chord_scores(pcs, bass, np.zeros(1, np.int64), params)[0]))
    root, quality = best % 12, best // 12
    inv = int(inversions(np.array([root]), np.array([quality]), bass)[0])
    return root, QUALITY_NAMES[quality], inv
