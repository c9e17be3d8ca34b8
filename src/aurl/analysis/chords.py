"""Chord recognition: one chord per segment (usually a beat) by template matching.

Every segment's pitch-class durations are scored against 12 roots x the qualities below:
chord tones present count for, other notes against, missing chord tones cost a little,
a bass on the root and a chord that belongs to the local key help. A Viterbi pass with a
small cost per chord change then lets clear neighbours settle ambiguous beats (passing
notes, a lone third).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aurl.analysis.chroma import (
    chroma,
    extreme_note,
    extreme_pitch,
    overlaps,
    sounding_at_start,
)
from aurl.analysis.key import PITCH_NAMES, viterbi
from aurl.analysis.nonchord import NonChordParams, note_roles, overlap_weights
from aurl.analysis.piece import Piece

# Name, intervals above the root, prior (simpler chords win ties; a seventh needs evidence).
QUALITIES: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("maj", (0, 4, 7), 0.06),
    ("min", (0, 3, 7), 0.05),
    ("dim", (0, 3, 6), 0.0),
    ("aug", (0, 4, 8), -0.08),
    ("dom7", (0, 4, 7, 10), 0.0),
    ("maj7", (0, 4, 7, 11), -0.1),
    ("min7", (0, 3, 7, 10), -0.05),
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

    held_weight: float = 1.5  # extra weight for notes sounding at the segment's start
    absent_cost: float = 0.6  # per fraction of chord tones missing
    bass_bonus: float = 0.04  # the bass note is the root
    diatonic_bonus: float = 0.08  # the chord belongs to the local key
    change_cost: float = 0.08  # Viterbi cost per chord change
    present_fraction: float = 0.15  # a pitch class under this share of the segment is absent
    passing_seventh_cost: float = 0.3  # a seventh that does not sound at the segment's start
    half_beat_margin: float = 0.3  # score gain a chord struck on a half beat needs to take over
    pedal_beats: float = 0.0  # a bass held this long (beats) is a pedal: no root bonus; 0: off
    nonchord: NonChordParams | None = None  # weights of non-chord tones; None: all count fully


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
_MAJ, _MIN, _SUS4 = (QUALITY_NAMES.index(q) for q in ("maj", "min", "sus4"))
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
    sound = segment_sound(piece, bounds, params)
    scores = chord_scores(
        sound.weights, sound.root_bass, np.asarray(keys, np.int64), params, sound.struck
    )
    scores[sound.silent] = 0.0
    best = viterbi(scores, params.change_cost) if len(scores) else np.zeros(0, np.int64)
    return _label(bounds, sound, resolve_fourths(best, sound.weights))


def resolve_fourths(best: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Name a sus4 chord by its resolution where a third over the root sounds.

    A fourth over the root is nearly always a suspension that falls to the third within the
    beat or on the next; analysts name the chord of the resolution. The third with more weight
    in the segment and the next decides between major and minor; with neither, the sus4
    stays.

    Args:
        best: Template index (``quality * 12 + root``) of every segment.
        weights: ``(n, 12)`` pitch-class weights of the segments.
    """
    root = best % 12
    rows = np.arange(len(best))
    following = np.zeros_like(weights)
    following[:-1] = weights[1:]
    weights = weights + following
    major, minor = weights[rows, (root + 4) % 12], weights[rows, (root + 3) % 12]
    triad = np.where(major >= minor, _MAJ, _MIN) * 12 + root
    return np.where((best // 12 == _SUS4) & (np.maximum(major, minor) > 0), triad, best)


def subdivide(bounds: np.ndarray) -> np.ndarray:
    """Every segment ``[bounds[i], bounds[i + 1])`` split in two halves, or in three where its
    length is a dotted value (a compound meter's beat: three eighths, three quarters)."""
    bounds = np.asarray(bounds, np.int64)
    length = np.diff(bounds)
    third = length // 3
    compound = (length % 3 == 0) & np.isin(third, (3, 6, 12, 24))
    points = [bounds[:-1], np.where(compound, bounds[:-1] + third, (bounds[:-1] + bounds[1:]) // 2)]
    points.append(np.where(compound, bounds[:-1] + 2 * third, bounds[:-1]))  # no third part
    return np.unique(np.concatenate([*points, bounds[-1:]]))


def refine_chords(
    piece: Piece, coarse: Chords, fine: np.ndarray, keys: np.ndarray, params: ChordParams
) -> Chords:
    """Chords on a finer grid nested in ``coarse``'s: each fine segment keeps the chord of the
    coarse segment holding it, except where a chord struck on it (not at the coarse segment's
    start) fits clearly better (by ``params.half_beat_margin``).

    Args:
        piece: The piece.
        coarse: Chords of the coarse segments.
        fine: Fine segment boundaries in steps, containing every coarse boundary.
        keys: Local key index of every fine segment.
        params: Score weights.
    """
    fine = np.asarray(fine, np.int64)
    # every note counts here: a passing seventh struck on a half beat is a change (V -> V7)
    sound = segment_sound(piece, fine, replace(params, nonchord=None))
    scores = chord_scores(sound.weights, sound.root_bass, np.asarray(keys, np.int64), params,
                          sound.struck)  # fmt: skip
    holder = np.searchsorted(coarse.starts, fine[:-1], side="right") - 1
    kept = (np.maximum(coarse.quality, 0) * 12 + np.maximum(coarse.root, 0))[holder]
    inner = fine[:-1] != coarse.starts[holder]
    rows = np.arange(len(scores))
    new = np.argmax(scores, 1)
    split = inner & (scores[rows, new] - scores[rows, kept] > params.half_beat_margin)
    return _label(fine, sound, np.where(split, new, kept))


@dataclass(frozen=True)
class SegmentSound:
    """What sounds in each segment: weighted chroma, bass, top, struck pitch classes; the
    bass that may name the root (-1 under a pedal: a bass held over changing harmony)."""

    weights: np.ndarray
    bass: np.ndarray
    root_bass: np.ndarray
    high: np.ndarray
    struck: np.ndarray
    silent: np.ndarray


def segment_sound(piece: Piece, bounds: np.ndarray, params: ChordParams) -> SegmentSound:
    """The sound of every segment ``[bounds[i], bounds[i + 1])``."""
    ov = overlaps(piece, bounds)
    factor = None
    if params.nonchord is not None:
        factor = overlap_weights(note_roles(piece, params.nonchord), ov.note, bounds[ov.segment])
    weights = chroma(piece, ov, params.held_weight, factor)
    low = extreme_note(piece, ov, lowest=True)
    bass = np.where(low >= 0, piece.pitch[np.maximum(low, 0)] % 12, -1)
    root_bass = bass
    if params.pedal_beats > 0:
        held = bounds[:-1] - piece.time[np.maximum(low, 0)]
        beat = float(np.median(piece.beat_steps)) if len(piece.beat_steps) else 1.0
        root_bass = np.where(held >= params.pedal_beats * beat, -1, bass)
    return SegmentSound(
        weights=weights,
        bass=bass,
        root_bass=root_bass,
        high=extreme_pitch(piece, ov, lowest=False),
        struck=sounding_at_start(piece, ov),
        silent=weights.sum(1) == 0,
    )


def _label(bounds: np.ndarray, sound: SegmentSound, best: np.ndarray) -> Chords:
    """Chords from the best template index of every segment."""
    root = np.where(sound.silent, -1, _ROOTS[best])
    quality = np.where(sound.silent, -1, best // 12)
    total = np.maximum(sound.weights.sum(1), 1e-9)
    fit = (sound.weights * _TEMPLATES[best]).sum(1) / total
    return Chords(
        starts=bounds[:-1],
        ends=bounds[1:],
        root=root,
        quality=quality,
        bass=sound.bass,
        inversion=inversions(root, quality, sound.bass),
        soprano=sound.high,
        fit=np.where(sound.silent, 0.0, fit),
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
