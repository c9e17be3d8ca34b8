"""What travels in response bodies: pieces and bars out (uploads: :mod:`aurl.serve.upload`)."""

from __future__ import annotations

import base64

import numpy as np
import symusic

from aurl.api import Piece
from aurl.serve.schemas import PieceOut


def midi_base64(score: symusic.Score) -> str:
    """A score as base64 MIDI."""
    return base64.b64encode(score.dumps_midi()).decode("ascii")


def piece_out(piece: Piece, ended_short: bool = False, with_notes: bool = False) -> PieceOut:
    """A piece for a response; ``with_notes`` adds its tracks, bar lines and notes."""
    score, extra = piece.score, {}
    if with_notes:
        extra = {"tracks": [t.name or f"Track {k + 1}" for k, t in enumerate(score.tracks)],
                 "bar_starts": [round(s, 4) for s in tick_seconds(score, bar_ticks(score))],
                 "note_list": bar_notes(score, 0.0)}  # fmt: skip
    return PieceOut(midi=midi_base64(score), bars=piece.bars, notes=piece.notes,
                    seconds=round(piece.seconds, 3), ended_short=ended_short or piece.short,
                    **extra)  # fmt: skip


def bar_ticks(score: symusic.Score) -> list[int]:
    """The tick of every bar line up to the end of the last note, from the time signatures
    (4/4 before the first)."""
    tpq, end = int(score.ticks_per_quarter), int(score.end())
    sigs = sorted((int(t.time), int(t.numerator), int(t.denominator))
                  for t in score.time_signatures)  # fmt: skip
    ticks, tick, num, den = [], 0, 4, 4
    while tick < end or not ticks:
        while sigs and sigs[0][0] <= tick:
            _, num, den = sigs.pop(0)
        ticks.append(tick)
        tick += max(tpq * 4 * num // den, 1)
    return ticks


def tick_seconds(score: symusic.Score, ticks: list[int]) -> list[float]:
    """Ticks as seconds under the score's tempo changes (120 bpm before the first)."""
    tpq = max(int(score.ticks_per_quarter), 1)
    changes = sorted((int(t.time), float(t.qpm)) for t in score.tempos)
    out = []
    for tick in ticks:
        seconds, at, qpm = 0.0, 0, 120.0
        for time, new in changes:
            if time >= tick:
                break
            seconds += (time - at) / tpq * 60.0 / qpm
            at, qpm = time, new
        out.append(seconds + (tick - at) / tpq * 60.0 / qpm)
    return out


def bar_notes(score: symusic.Score, since: float) -> list[dict]:
    """The notes of ``score`` starting at or after ``since`` seconds, for a streamed bar:
    track index, pitch, start and duration in seconds, velocity."""
    out = []
    for k, track in enumerate(score.to("second").tracks):
        notes = track.notes.numpy()
        for i in np.flatnonzero(notes["time"] >= since - 1e-6):
            out.append({"track": k, "pitch": int(notes["pitch"][i]),
                        "start": round(float(notes["time"][i]), 4),
                        "duration": round(float(notes["duration"][i]), 4),
                        "velocity": int(notes["velocity"][i])})  # fmt: skip
    return sorted(out, key=lambda n: (n["start"], n["track"], n["pitch"]))
