"""Non-chord tones: which notes are passing or neighbour notes, suspensions, retardations or
anticipations, so that chord recognition weighs them less than the chord they decorate.

Without voices, a note's melodic neighbours are the closest notes that end where it starts
(approach) and that start where it ends (departure). The rules are the textbook ones:

- passing or neighbour note: approached and left by step, shorter than the beat and off it
  (weighs ``passing``); the same on the beat is an accented passing note (``accented``);
- suspension (or retardation): held over a beat where it is dissonant (a second or seventh
  against a note sounding there, or a fourth over the bass) and left by a step down (or a
  semitone up) within that beat over the same bass; from that beat on it weighs
  ``suspension`` (a prepared seventh resolves as the bass moves: it stays a chord tone);
- anticipation: a short note off the beat whose pitch is struck again on the next beat
  (``anticipation``).

Every other note weighs 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.analysis.piece import Piece

NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class NonChordParams:
    """Weight left to each kind of non-chord tone (1 = an ordinary note)."""

    passing: float = 0.3
    accented: float = 0.7
    suspension: float = 0.3
    anticipation: float = 0.4


@dataclass(frozen=True)
class NoteRoles:
    """Per-note weights: ``struck`` applies until ``held_from`` (steps), ``held`` after it."""

    struck: np.ndarray
    held: np.ndarray
    held_from: np.ndarray


def _closest(pitch: int, candidates: np.ndarray) -> int | None:
    """The candidate pitch nearest ``pitch`` (None when there is none)."""
    if not len(candidates):
        return None
    return int(candidates[np.argmin(np.abs(candidates - pitch))])


def note_roles(piece: Piece, params: NonChordParams | None = None) -> NoteRoles:
    """Weights of every note of ``piece`` as a chord member (see the module docstring)."""
    params = params or NonChordParams()
    t, p = piece.time, piece.pitch
    e = t + piece.duration
    n = len(t)
    struck, held = np.ones(n), np.ones(n)
    held_from = np.full(n, NEVER, np.int64)
    beats = piece.beat_starts()
    bar = np.clip(np.searchsorted(piece.bar_starts, t, side="right") - 1, 0, None)
    beat_len = piece.beat_steps[bar]
    on_beat = np.isin(t, beats)
    by_end = np.argsort(e, kind="stable")
    ends_sorted = e[by_end]

    def ending_at(step: int) -> np.ndarray:
        lo, hi = np.searchsorted(ends_sorted, [step, step + 1])
        return p[by_end[lo:hi]]

    def starting_at(step: int) -> np.ndarray:
        lo, hi = np.searchsorted(t, [step, step + 1])
        return p[lo:hi]

    def sounding_at(step: int) -> np.ndarray:
        return p[(t <= step) & (e > step)]

    for i in range(n):
        pitch = int(p[i])
        before = _closest(pitch, ending_at(int(t[i])))
        after_notes = starting_at(int(e[i]))
        after = _closest(pitch, after_notes)
        step_in = before is not None and 1 <= abs(pitch - before) <= 2
        step_out = after is not None and 1 <= abs(after - pitch) <= 2
        short = piece.duration[i] * 2 <= beat_len[i]
        if short and step_in and step_out:
            struck[i] = params.accented if on_beat[i] else params.passing
            continue
        if short and not on_beat[i] and np.isin(e[i], beats) and pitch in after_notes:
            struck[i] = params.anticipation
            continue
        crossed = beats[(beats > t[i]) & (beats < e[i])]
        if not len(crossed) or after is None:
            continue
        b = int(crossed[-1])
        if after - pitch not in (-1, -2, 1) or e[i] - b > beat_len[i]:
            continue
        at_beat, at_end = sounding_at(b), sounding_at(int(e[i]))
        same_bass = at_end.min() == at_beat[at_beat != pitch].min(initial=at_end.min())
        if same_bass and _dissonant_at(pitch, at_beat):
            held[i], held_from[i] = params.suspension, b
    return NoteRoles(struck, held, held_from)


def overlap_weights(roles: NoteRoles, note: np.ndarray, segment_start: np.ndarray) -> np.ndarray:
    """The weight of each note-segment overlap: the note's ``held`` weight in segments from
    ``held_from`` on, its ``struck`` weight before."""
    later = segment_start >= roles.held_from[note]
    return np.where(later, roles.held[note], roles.struck[note])


def _dissonant_at(pitch: int, sounding: np.ndarray) -> bool:
    """Whether ``pitch`` clashes with the pitches ``sounding`` beside it: a second or seventh
    against one of them, or a fourth over the lowest."""
    others = sounding[sounding != pitch]
    if not len(others):
        return False
    ic = (pitch - others) % 12
    if np.isin(ic, (1, 2, 10, 11)).any():
        return True
    low = int(others.min())
    return low < pitch and (pitch - low) % 12 == 5
