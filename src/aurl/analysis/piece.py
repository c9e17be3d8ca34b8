"""The input of every analysis: a piece's pitched notes on a time grid, with its bars and beats.

Times are integer steps (``steps_per_quarter`` per quarter note). Bars may start before time 0:
a piece with a one-beat pickup in 4/4 has its first bar start three beats before the first
note, so bar and beat labels read as a score would (the pickup is bar 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from aurl.tokens.encode import score_to_notes
from aurl.tokens.vocab import DRUM_PROGRAM

STEPS_PER_QUARTER = 12


@dataclass(frozen=True)
class Piece:
    """Pitched notes and the metric grid of one piece.

    Attributes:
        name: What to call the piece in reports.
        time: Onset of every note in steps (int64), sorted by time then pitch.
        duration: Duration in steps (at least 1).
        pitch: MIDI pitch.
        velocity: MIDI velocity.
        steps_per_quarter: Steps per quarter note.
        bar_starts: Start of every bar in steps, increasing; the first may be negative (pickup).
        beat_steps: Length of a beat in steps, for every bar.
        first_bar_number: Number of the first bar in labels (0 when the piece has a pickup).
    """

    name: str
    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    steps_per_quarter: int
    bar_starts: np.ndarray
    beat_steps: np.ndarray
    first_bar_number: int = 1

    @property
    def end(self) -> int:
        """The step where the last note ends."""
        return int((self.time + self.duration).max()) if len(self.time) else 0

    def beat_starts(self) -> np.ndarray:
        """Start of every beat in ``[0, end)``, in steps (int64, increasing, from 0)."""
        ends = np.append(self.bar_starts[1:], max(self.end, int(self.bar_starts[-1]) + 1))
        parts = [
            np.arange(s, e, b)
            for s, e, b in zip(self.bar_starts, ends, self.beat_steps, strict=True)
        ]
        beats = np.concatenate(parts).astype(np.int64)
        beats = beats[(beats > 0) & (beats < max(self.end, 1))]
        return np.concatenate([[0], beats]).astype(np.int64)  # a pickup shorter than a beat too

    def position(self, step: int) -> dict:
        """Bar number and beat (1-based, fractional) of a time in steps, plus the quarter time."""
        bar = int(np.searchsorted(self.bar_starts, step, side="right") - 1)
        bar = max(bar, 0)
        beat = 1 + (step - int(self.bar_starts[bar])) / int(self.beat_steps[bar])
        return {
            "bar": bar + self.first_bar_number,
            "beat": round(float(beat), 3),
            "quarter": round(step / self.steps_per_quarter, 3),
        }


def make_piece(
    time: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    velocity: np.ndarray | None = None,
    steps_per_quarter: int = STEPS_PER_QUARTER,
    beats_per_bar: int = 4,
    beat_steps: int | None = None,
    pickup: int = 0,
    name: str = "piece",
) -> Piece:
    """Build a Piece in one meter from note arrays.

    Args:
        time: Onsets in steps.
        duration: Durations in steps.
        pitch: MIDI pitches.
        velocity: MIDI velocities (default 80).
        steps_per_quarter: Steps per quarter note.
        beats_per_bar: Beats in every bar.
        beat_steps: Steps per beat (default one quarter).
        pickup: Steps of an incomplete first bar before the first full bar (0 for none).
        name: The piece's name.

    Returns:
        The Piece, notes sorted by time then pitch.
    """
    time = np.asarray(time, np.int64)
    duration = np.maximum(np.asarray(duration, np.int64), 1)
    pitch = np.asarray(pitch, np.int64)
    velocity = np.full(len(time), 80, np.int64) if velocity is None else np.asarray(velocity)
    beat = int(beat_steps or steps_per_quarter)
    bar = beat * beats_per_bar
    end = int((time + duration).max()) if len(time) else bar
    first = -((bar - pickup) % bar) if pickup else 0
    starts = np.arange(first, max(end, first + 1), bar, dtype=np.int64)
    order = np.lexsort((pitch, time))
    return Piece(
        name=name,
        time=time[order],
        duration=duration[order],
        pitch=pitch[order],
        velocity=velocity[order].astype(np.int64),
        steps_per_quarter=steps_per_quarter,
        bar_starts=starts,
        beat_steps=np.full(len(starts), beat, np.int64),
        first_bar_number=0 if pickup else 1,
    )


def piece_from_score(
    score: symusic.Score, name: str, steps_per_quarter: int = STEPS_PER_QUARTER
) -> Piece:
    """Convert a symusic Score to a Piece: pitched notes only, bars from its time signatures.

    A pickup is guessed when the first time signature lasts the whole piece: the bar phase
    is the one that puts the most note-duration on downbeats (see :func:`guess_pickup`).

    Raises:
        ValueError: If the score has no pitched notes.
    """
    notes = pitched_notes(score, steps_per_quarter)
    if not len(notes["time"]):
        raise ValueError(f"{name}: no pitched notes (only drums)")
    end = int((notes["time"] + notes["duration"]).max())
    changes = _meter_changes(score, steps_per_quarter)
    starts, beats = _bar_grid(changes, end)
    first_bar_number = 1
    if len(changes) == 1:
        bar_len = int(starts[1] - starts[0]) if len(starts) > 1 else int(beats[0])
        shift = guess_pickup(notes["time"], notes["duration"], bar_len, int(beats[0]))
        if shift:
            starts = np.append(starts[0] - (bar_len - shift), starts + shift)
            starts = starts[starts < max(end, 1)]
            beats = np.full(len(starts), beats[0], np.int64)
            first_bar_number = 0
    return Piece(
        name=name,
        time=notes["time"],
        duration=notes["duration"],
        pitch=notes["pitch"],
        velocity=notes["velocity"],
        steps_per_quarter=steps_per_quarter,
        bar_starts=starts,
        beat_steps=beats,
        first_bar_number=first_bar_number,
    )


def pitched_notes(score: symusic.Score, steps_per_quarter: int) -> dict[str, np.ndarray]:
    """All non-drum notes on the tokenizer's grid as int64 arrays, sorted by time then pitch."""
    notes = score_to_notes(score, steps_per_quarter)
    keep = notes["program"] != DRUM_PROGRAM
    order = np.lexsort((notes["pitch"][keep], notes["time"][keep]))
    return {k: notes[k][keep][order] for k in ("time", "duration", "pitch", "velocity")}


def guess_pickup(time: np.ndarray, duration: np.ndarray, bar_len: int, beat: int) -> int:
    """Steps of pickup before the first downbeat, from where long notes start.

    Each whole-beat phase of the bar is scored by the total duration of the notes that start on
    it (long notes and harmonic arrivals fall on downbeats); phase 0 wins ties and needs to be
    beaten by 10% to move.
    """
    if bar_len <= beat or bar_len % beat:
        return 0
    weight = np.bincount(time % bar_len, weights=duration**1.5, minlength=bar_len)
    phases = weight[::beat]
    best = int(np.argmax(phases))
    if best == 0 or phases[best] < 1.1 * phases[0]:
        return 0
    return best * beat


def beat_steps_of(numerator: int, denominator: int, spq: int) -> int:
    """Steps per beat of a time signature: the denominator's unit, three of them in compound
    meters (6/8, 9/8, 12/8), the whole bar where the unit does not divide it."""
    bar = max(1, round(numerator * 4 * spq / denominator))
    unit = round(4 * spq / denominator)
    compound = denominator >= 8 and numerator % 3 == 0 and numerator > 3
    beat = unit * 3 if compound else unit
    return beat if beat > 0 and bar % beat == 0 else bar


def _meter_changes(score: symusic.Score, spq: int) -> list[tuple[int, int, int]]:
    """``(step, bar steps, beat steps)`` at every time-signature change (4/4 when none)."""
    out: list[tuple[int, int, int]] = []
    for ts in sorted(score.time_signatures, key=lambda t: t.time):
        step = round(ts.time * spq / score.tpq)
        bar = max(1, round(ts.numerator * 4 * spq / ts.denominator))
        beat = beat_steps_of(ts.numerator, ts.denominator, spq)
        if out and out[-1][0] == step:
            out[-1] = (step, bar, beat)
        elif not out or out[-1][1:] != (bar, beat):
            out.append((step, bar, beat))
    if not out or out[0][0] > 0:
        out.insert(0, (0, *(out[0][1:] if out else (4 * spq, spq))))
    return out


def _bar_grid(changes: list[tuple[int, int, int]], end: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar starts and beat lengths; a change takes effect at the first bar line at or after it."""
    starts, beats, t = [], [], 0
    for i, (_, bar, beat) in enumerate(changes):
        limit = changes[i + 1][0] if i + 1 < len(changes) else max(end, 1)
        stop = t + -(-(limit - t) // bar) * bar if limit > t else t
        if i + 1 == len(changes):
            stop = max(stop, t + bar)
        seg = np.arange(t, stop, bar, dtype=np.int64)
        starts.append(seg)
        beats.append(np.full(len(seg), beat, np.int64))
        t = stop
    return np.concatenate(starts), np.concatenate(beats)
