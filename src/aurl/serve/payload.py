"""What travels in request and response bodies: base64 MIDI in, pieces and bars out."""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np
import symusic

from aurl.api import Piece
from aurl.midi import read_midi_bytes
from aurl.midi.repair import repair_score
from aurl.serve.schemas import PieceOut

_DATA_URL = re.compile(r"^data:[\w/.+-]*;base64,")


class PayloadError(ValueError):
    """A request body that cannot be used; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def midi_from_base64(text: str, field: str, max_bytes: int,
                     max_quarters: int = 8192) -> symusic.Score:  # fmt: skip
    """The score of a base64 MIDI file (a ``data:...;base64,`` prefix is allowed), repaired
    as ``aurl prepare`` repairs files (absurd tempos, zero-length and overlapping notes,
    events after a huge silence, empty tracks).

    Raises:
        PayloadError: not base64 (400), too large (413), not a readable MIDI file with notes
            (400), or longer than ``max_quarters`` quarter notes after repair (413: what
            reads such a piece costs in proportion to its length); the message names the
            field.
    """
    text = _DATA_URL.sub("", text.strip(), count=1)
    if len(text) > (max_bytes * 4) // 3 + 8:
        raise PayloadError(f"{field}: larger than the limit of {max_bytes} bytes", 413)
    try:
        data = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"{field}: not base64") from None
    if len(data) > max_bytes:
        raise PayloadError(f"{field}: larger than the limit of {max_bytes} bytes", 413)
    if not data:
        raise PayloadError(f"{field}: empty")
    from aurl.midi import MidiError

    try:
        score = read_midi_bytes(data, field)
    except MidiError as err:
        raise PayloadError(str(err).splitlines()[0]) from None
    score, _ = repair_score(score)
    if score.note_num() == 0:
        raise PayloadError(f"{field}: no notes")
    quarters = score.end() / max(int(score.ticks_per_quarter), 1)
    if quarters > max_quarters:
        raise PayloadError(f"{field}: {quarters:.0f} quarter notes long, over the limit of "
                           f"{max_quarters}", 413)  # fmt: skip
    return score


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
