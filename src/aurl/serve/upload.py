"""What travels in request bodies: base64 MIDI in, checked and repaired.

It imports no model code (no torch), so that the analysis worker processes
(:mod:`aurl.serve.workers`) start quickly and stay small.
"""

from __future__ import annotations

import base64
import binascii
import re

import symusic

from aurl.midi import MidiError, read_midi_bytes
from aurl.midi.repair import repair_score

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
