"""Read MIDI files into tick-based symusic Scores, with one clear error per bad file.

symusic parses; the header is checked first so that the common failures get a specific
reason, and files that symusic rejects only for data bytes above 127 are rescued through
mido with ``clip=True``.
"""

from __future__ import annotations

import io
import os
import re
from typing import NamedTuple

import symusic

from aurl.midi.errors import MidiError

_HEADER_SIZE = 14  # "MThd", length (6), format, track count, division
_DATA_BYTE = re.compile(r"^Get (\w+)=(\d+)$")  # symusic's message for a data byte above 127
_SYMUSIC_REASONS = (
    (
        re.compile(r"Invalid chunk length (\d+) \(remaining bytes after header: (\d+)\)"),
        "truncated file: a chunk declares {0} bytes but only {1} remain",
    ),
    (
        re.compile(r"Unexpected EOF in Meta Event"),
        "truncated file: a meta event runs past the end of its track",
    ),
    (
        re.compile(r"Unexpected EOF in SysEx Event"),
        "truncated file: a SysEx event runs past the end of its track",
    ),
    (
        re.compile(r"Unexpected EOF in running status"),
        "truncated file: an event runs past the end of its track",
    ),
    (
        re.compile(r"Unexpected EOF while reading chunk header"),
        "truncated file: a chunk header is cut short",
    ),
    (
        re.compile(r"Unknown or unsupported status byte: (0x[0-9a-fA-F]+)"),
        "invalid status byte {0}",
    ),
    (
        re.compile(r"Unexpected running status"),
        "corrupt track data (running status with no previous event)",
    ),
    (
        re.compile(r"first chunk length is not 6, but (\d+)"),
        "bad header: MThd length is {0}, expected 6",
    ),
    (
        re.compile(r"Invaild midi format \((\d+)\)"),
        "unsupported MIDI format {0} (expected 0, 1 or 2)",
    ),
)


class ParsedMidi(NamedTuple):
    """What :func:`parse_midi_bytes` found: the Score, the bytes it came from, and whether
    data bytes above 127 had to be clipped to read them."""

    score: symusic.Score
    data: bytes  # the bytes symusic parsed (re-encoded through mido when clipped)
    clipped: bool


def read_midi(path: str | os.PathLike) -> symusic.Score:
    """Read a MIDI file into a tick-based Score.

    Args:
        path: The ``.mid``, ``.midi`` or ``.kar`` file.

    Returns:
        The parsed Score, with at least one note.

    Raises:
        MidiError: If the file is missing, unreadable, not MIDI, malformed beyond rescue,
            uses SMPTE timing, or holds no notes. The message names the file and the reason.
    """
    return read_midi_bytes(read_file_bytes(path), path)


def read_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a file, or a MidiError that says why they cannot be had.

    Raises:
        MidiError: If the path is missing, is a folder, or cannot be read.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as err:
        raise MidiError(path, "file not found") from err
    except IsADirectoryError as err:
        raise MidiError(path, "is a folder, not a file") from err
    except OSError as err:
        raise MidiError(path, f"cannot read file ({err.strerror or err})") from err


def read_midi_bytes(data: bytes, name: str | os.PathLike = "<bytes>") -> symusic.Score:
    """Parse the bytes of a MIDI file into a tick-based Score.

    Args:
        data: The whole file's bytes.
        name: What to call the data in error messages, usually its file path.

    Returns:
        The parsed Score, with at least one note.

    Raises:
        MidiError: As for :func:`read_midi`.
    """
    score = parse_midi_bytes(data, name).score
    if score.note_num() == 0:
        raise MidiError(name, "no notes")
    return score


def parse_midi_bytes(data: bytes, name: str | os.PathLike = "<bytes>") -> ParsedMidi:
    """Parse MIDI bytes like :func:`read_midi_bytes`, but accept a Score with no notes and
    say whether data bytes above 127 were clipped to read it.

    Args:
        data: The whole file's bytes.
        name: What to call the data in error messages, usually its file path.

    Returns:
        The Score, the bytes symusic parsed, and whether they were clipped.

    Raises:
        MidiError: For every failure of :func:`read_midi_bytes` except "no notes".
    """
    _check_header(data, name)
    return _parse(data, name)


def _check_header(data: bytes, name: str | os.PathLike) -> None:
    """Raise MidiError for failures that show in the first 14 bytes."""
    if not data:
        raise MidiError(name, "empty file (0 bytes)")
    if data[:4] != b"MThd" and not (len(data) < 4 and b"MThd".startswith(data)):
        raise MidiError(name, "not a MIDI file (no MThd header)")
    if len(data) < _HEADER_SIZE:
        raise MidiError(name, f"truncated file: header cut short ({len(data)} bytes)")
    division = int.from_bytes(data[12:14], "big")
    if division & 0x8000:
        raise MidiError(name, "SMPTE time division is not supported")
    if division == 0:
        raise MidiError(name, "bad header: time division is 0 ticks per quarter note")


def _parse(data: bytes, name: str | os.PathLike) -> ParsedMidi:
    """Parse with symusic, rescuing out-of-range data bytes through mido."""
    try:
        return ParsedMidi(symusic.Score.from_midi(data), data, False)
    except Exception as err:  # symusic raises RuntimeError, but any failure is the file's
        message = _first_line(err)
        bad_byte = _DATA_BYTE.match(message)
        if bad_byte is None:
            raise MidiError(name, _symusic_reason(message)) from err
    try:
        clipped = _clip_with_mido(data)
        return ParsedMidi(symusic.Score.from_midi(clipped), clipped, True)
    except Exception as err:
        reason = f"data byte out of range ({bad_byte[1]}={bad_byte[2]}); clipping failed too"
        raise MidiError(name, f"{reason}: {_first_line(err)}") from err


def _clip_with_mido(data: bytes) -> bytes:
    """Re-encode MIDI bytes through mido, clipping data bytes to 0..127."""
    import mido  # only needed on the rescue path

    midi = mido.MidiFile(file=io.BytesIO(data), clip=True)
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()


def _symusic_reason(message: str) -> str:
    """Turn a symusic error message into a short reason."""
    for pattern, template in _SYMUSIC_REASONS:
        found = pattern.search(message)
        if found:
            return template.format(*found.groups())
    cleaned = message.removeprefix("MiniMidi: ").removesuffix(": iostream error")
    return f"unreadable MIDI data ({cleaned})"


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name if it has none."""
    if isinstance(err, EOFError):
        return "unexpected end of file"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
