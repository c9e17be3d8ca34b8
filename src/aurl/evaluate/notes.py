"""Token ids -> the notes and bar lines that every metric reads, vectorized.

A :class:`Notes` holds one piece on the tokenizer's time grid: flat note arrays sorted by
(time, program, pitch), drums as program 128, plus the start of every bar. It is the same
content as ``score_to_notes(decode(ids))`` (tested against it), built without a Python loop
per token so that a whole training split converts in well under a second. Microtiming
offsets, where a vocabulary has them, are ignored: metrics are computed on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurl.tokens import EOS, TokenType, Vocabulary
from aurl.tokens.tracks import program_in_force
from aurl.tokens.vocab import DRUM_PROGRAM

__all__ = ["DRUM_PROGRAM", "Notes", "crop_bars", "ids_to_notes", "read_folder_ids"]


@dataclass(frozen=True)
class Notes:
    """One piece's notes on the grid and its bar lines.

    Attributes:
        time, duration, pitch, velocity, program: int64 arrays, one entry per note, sorted
            by (time, program, pitch); times and durations in grid steps.
        bar_starts: int64 start step of every bar (the piece's bar lines, in order).
        steps_per_quarter: grid steps per quarter note.
    """

    time: np.ndarray
    duration: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray
    bar_starts: np.ndarray
    steps_per_quarter: int

    def __len__(self) -> int:
        return len(self.time)

    @property
    def end(self) -> np.ndarray:
        return self.time + self.duration

    @property
    def is_drum(self) -> np.ndarray:
        return self.program == DRUM_PROGRAM

    @property
    def num_bars(self) -> int:
        return len(self.bar_starts)


def _last_index(mask: np.ndarray) -> np.ndarray:
    """For every position, the index of the last True at or before it (-1 if none)."""
    return np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1)) if len(mask) else mask


def ids_to_notes(ids: np.ndarray, vocab: Vocabulary) -> Notes:
    """Decode token ids into :class:`Notes`, with the same tolerance as ``decode``.

    A note is emitted at each Duration token that follows a Pitch and a Velocity since the
    previous Duration; it sounds at the current Position of the current bar, with the
    Program last set (with tracks: its track's program). Decoding stops at EOS; ids outside
    the vocabulary are skipped.
    """
    ids = np.asarray(ids, np.int64)
    stop = np.flatnonzero(ids == EOS)
    ids = ids[: stop[0]] if len(stop) else ids
    ids = ids[(ids >= 0) & (ids < vocab.size)]
    types, values = vocab.types[ids], vocab.values[ids]

    # Bars: each one is as long as the TimeSig in force when the next Bar arrives.
    is_bar, is_sig = types == TokenType.BAR, types == TokenType.TIMESIG
    four_four = _four_four_steps(vocab)
    sig_at = _last_index(is_sig)
    length_in_force = np.where(sig_at >= 0, vocab.bar_steps[ids[np.maximum(sig_at, 0)]], four_four)
    bar_at = np.flatnonzero(is_bar)
    bar_starts = np.concatenate([[0], np.cumsum(length_in_force[bar_at[1:]])]).astype(np.int64)
    bar_of = np.cumsum(is_bar) - 1  # -1 before the first Bar
    start_of = np.where(bar_of >= 0, bar_starts[np.maximum(bar_of, 0)], 0)

    # Time of every token: its bar's start plus the last Position since that Bar.
    mark = _last_index(is_bar | (types == TokenType.POSITION))
    pos = np.where(
        (mark >= 0) & (types[np.maximum(mark, 0)] == TokenType.POSITION),
        values[np.maximum(mark, 0)],
        0,
    )
    time = start_of + pos

    program = program_in_force(ids, vocab)

    # Notes: Duration tokens with a Pitch and a Velocity since the previous Duration.
    is_dur = types == TokenType.DURATION
    dur_at = np.flatnonzero(is_dur)
    prev_dur = np.concatenate([[-1], dur_at[:-1]])
    pitch_at = _last_index(types == TokenType.PITCH)[dur_at]
    vel_at = _last_index(types == TokenType.VELOCITY)[dur_at]
    ok = (pitch_at > prev_dur) & (vel_at > prev_dur)
    dur_at, pitch_at, vel_at = dur_at[ok], pitch_at[ok], vel_at[ok]
    arrays = {
        "time": time[dur_at],
        "duration": values[dur_at] + 1,
        "pitch": values[pitch_at],
        "velocity": vocab.velocity_values[values[vel_at]],
        "program": program[dur_at],
    }
    order = np.lexsort((arrays["pitch"], arrays["program"], arrays["time"]))
    arrays = {k: v[order].astype(np.int64) for k, v in arrays.items()}
    return Notes(
        **arrays,
        bar_starts=bar_starts if len(bar_at) else np.zeros(0, np.int64),
        steps_per_quarter=vocab.config.steps_per_quarter,
    )


def crop_bars(notes: Notes, bars: int) -> Notes:
    """The first ``bars`` bars of a piece: notes starting before the next bar line."""
    if notes.num_bars <= bars:
        return notes
    keep = notes.time < notes.bar_starts[bars]
    return Notes(
        notes.time[keep],
        notes.duration[keep],
        notes.pitch[keep],
        notes.velocity[keep],
        notes.program[keep],
        notes.bar_starts[:bars],
        notes.steps_per_quarter,
    )


def read_folder_ids(
    folder: str | Path, tokenizer
) -> tuple[list[str], list[np.ndarray], list[dict]]:
    """Encode every MIDI file under ``folder`` (recursively) with ``tokenizer``.

    Returns:
        The file names (relative to the folder), their token ids, and the files skipped as
        ``{"file", "reason"}`` records (unreadable MIDI is reported, never fatal).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: the folder holds no MIDI files.
    """
    from aurl.midi import MidiError, midi_files, read_midi

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    files = midi_files(root)
    if not files:
        raise ValueError(f"{root}: no .mid, .midi or .kar files in this folder")
    names, ids, skipped = [], [], []
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            ids.append(tokenizer.encode(read_midi(path)))
            names.append(name)
        except MidiError as e:
            skipped.append({"file": name, "reason": e.reason})
    return names, ids, skipped


def _four_four_steps(vocab: Vocabulary) -> int:
    sigs = vocab.time_signatures
    index = sigs.index((4, 4)) if (4, 4) in sigs else 0
    return int(vocab.bar_steps[vocab.offsets[TokenType.TIMESIG] + index])
