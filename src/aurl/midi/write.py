"""Write Scores to MIDI files atomically."""

from __future__ import annotations

import os
from pathlib import Path

import symusic

from aurl.fileio import atomic_write_bytes
from aurl.midi.errors import MidiError


def write_midi(score: symusic.Score, path: str | os.PathLike) -> Path:
    """Write a Score to a MIDI file; the file appears whole or not at all.

    Parent folders are created as needed.

    Args:
        score: The Score to write (tick, quarter or second based).
        path: Where to write the ``.mid`` file.

    Returns:
        The path written.

    Raises:
        MidiError: If the Score cannot be encoded or the file cannot be written.
    """
    try:
        data = score.dumps_midi()
    except Exception as err:
        raise MidiError(path, f"cannot encode score as MIDI ({err})") from err
    try:
        return atomic_write_bytes(path, data)
    except OSError as err:
        raise MidiError(path, f"cannot write file ({err.strerror or err})") from err
