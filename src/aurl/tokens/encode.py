"""Score -> token ids, vectorized over symusic's numpy arrays.

A piece is ``BOS (Bar [TimeSig] (Position [Tempo] ([Program] Pitch Velocity [MicroTiming]
Duration)+)*)* EOS``; with tracks, ``BOS (Track Program [Voice])* (Bar ...)* EOS`` with a
Track token in place of Program (see :mod:`aurl.tokens.tracks`). Every event becomes a
fixed-width row of five slots (-1 where a slot is unused); the rows are sorted by (time,
kind, program or track, pitch) and flattened, so no Python loop runs per note. :func:`encode_many` does the same for many Scores in one pass, laying
them end to end on one time line; :func:`encode` is the batch of one.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import symusic

from aurl.midi.arrays import NoteTable, note_table
from aurl.tokens.tracks import assign_tracks
from aurl.tokens.vocab import BOS, EOS, TokenType, Vocabulary, tempo_bin, velocity_bin

_BOS_ROW, _HEADER_ROW, _BAR_ROW, _POSITION_ROW, _NOTE_ROW, _EOS_ROW = range(6)  # order at a time


def score_to_notes(
    score: symusic.Score, steps_per_quarter: int, micro: int = 1
) -> dict[str, np.ndarray]:
    """All notes of ``score`` on the grid, as flat arrays sorted by (time, program, pitch).

    Drum tracks get program ``DRUM_PROGRAM``. Durations are at least one step. With
    ``micro`` > 1, ``offset`` holds each onset's distance from its grid step in 1/micro of a
    step (from ``-(micro // 2)`` up); otherwise it is all zeros.
    """
    notes = grid_notes(note_table([score]), steps_per_quarter, micro)
    del notes["piece"]
    return notes


def grid_notes(table: NoteTable, steps_per_quarter: int, micro: int = 1,
               track: np.ndarray | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """:func:`score_to_notes` of every Score in ``table``: one set of flat arrays sorted by
    (piece, time, program, pitch), with ``piece`` giving each note's Score. Tick times are
    brought to the grid as symusic's ``resample`` would. With ``track`` (each note's track
    in its piece, below 256) the notes sort by track instead of program and ``track`` is
    returned too."""
    tpqs = [a.tpq for a in table.scores]
    if tpqs and min(tpqs) <= 0:
        raise ValueError(f"a score has {min(tpqs)} ticks per quarter")
    # One resolution for all (always so for one Score) saves a gather per note.
    one = len(set(tpqs)) <= 1
    tpq = tpqs[0] if one and tpqs else np.array(tpqs, np.int64)[table.piece]
    steps = steps_per_quarter * micro
    out = {"pitch": table.pitch, "velocity": table.velocity, "program": table.program}
    if track is not None:
        out["track"] = track
    if len(table) > 1:
        out["piece"] = table.piece
    fine = _to_grid(table.time, tpq, steps)
    out["time"] = (fine + micro // 2) // micro  # nearest grid step
    out["offset"] = fine - out["time"] * micro
    duration = np.maximum(_to_grid(table.duration, tpq, steps), 1)
    out["duration"] = np.maximum((duration + micro // 2) // micro, 1)
    # One int64 key (piece, time, program, pitch) sorts faster than a four-key lexsort; it
    # holds times below 2**31 (symusic's ticks are int32) for up to 2**16 scores.
    key = out["time"] << 16 | (out["program"] if track is None else track) << 8 | out["pitch"]
    if len(table) > 1:
        key |= out["piece"] << 47
    order = np.argsort(key, kind="stable")
    out = {k: v[order] for k, v in out.items()}
    if len(table) <= 1:
        out["piece"] = np.zeros(len(order), np.int64)
    return out


def one_note_per_pitch(notes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sorted grid notes (with ``track``) keeping one note per piece, step, track and pitch:
    the first, lengthened to the longest of them. Notes that start together on one pitch of
    one track sound as one; the grammar with tracks has each track's pitches at a position
    strictly rising."""
    piece, time, track, pitch = notes["piece"], notes["time"], notes["track"], notes["pitch"]
    same = np.zeros(len(time), bool)
    same[1:] = ((piece[1:] == piece[:-1]) & (time[1:] == time[:-1]) & (track[1:] == track[:-1])
                & (pitch[1:] == pitch[:-1]))  # fmt: skip
    if not same.any():
        return notes
    first = ~same
    longest = np.zeros(int(first.sum()), notes["duration"].dtype)
    np.maximum.at(longest, np.cumsum(first) - 1, notes["duration"])
    out = {k: v[first] for k, v in notes.items()}
    out["duration"] = longest
    return out


def _to_grid(ticks: np.ndarray, tpq: np.ndarray | int, steps: int) -> np.ndarray:
    """``ticks * steps / tpq`` rounded half away from zero, in integers (what symusic's
    ``resample`` computes in floating point)."""
    if len(ticks) and ticks.min() < 0:  # not from a MIDI file; round the magnitude
        return np.sign(ticks) * _to_grid(np.abs(ticks), tpq, steps)
    return (ticks * (2 * steps) + tpq) // (2 * tpq)


def bar_grid(score: symusic.Score, vocab: Vocabulary, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar start times (in steps) covering ``[0, end]`` and the TimeSig index of each bar.

    A time-signature change takes effect at the first bar line at or after it, so bars are
    always whole. Signatures without a token fall back to 4/4 (or the first one known).
    """
    return _bars(score.tpq, score.time_signatures.numpy(), vocab, end)


def _bars(
    tpq: int, ts: dict[str, np.ndarray], vocab: Vocabulary, end: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bar_grid` from a Score's resolution and time-signature arrays."""
    index = vocab.signature_index
    fallback = index.get((4, 4), 0)
    steps = np.rint(ts["time"] * (vocab.config.steps_per_quarter / tpq)).astype(np.int64)
    changes = sorted(
        (t, index.get((n, d), fallback))
        for t, n, d in zip(
            steps.tolist(), ts["numerator"].tolist(), ts["denominator"].tolist(), strict=True
        )  # fmt: skip
    )
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, changes[0][1] if changes else fallback))
    # Of changes at one time only the last covers any bars; a change to the signature in
    # force moves no bar line. Files often repeat their meter once per track.
    kept: list[tuple[int, int]] = []
    for t, sig in changes:
        if kept and kept[-1][0] == t:
            kept.pop()
        if not kept or kept[-1][1] != sig:
            kept.append((t, sig))
    first_sig = vocab.offsets[TokenType.TIMESIG]
    if len(kept) == 1:  # one meter throughout
        length = int(vocab.bar_steps[first_sig + kept[0][1]])
        starts = np.arange(0, max(-(-(end + 1) // length) * length, length), length)
        return starts, np.full(len(starts), kept[0][1], np.int64)
    starts, kinds, counts, t = [], [], [], 0
    for i, (_, sig) in enumerate(kept):
        length = int(vocab.bar_steps[first_sig + sig])
        limit = kept[i + 1][0] if i + 1 < len(kept) else end + 1
        stop = max(t, t + -(-(limit - t) // length) * length)  # first bar line at/after limit
        if i + 1 == len(kept):
            stop = max(stop, t + length)
        starts.append(np.arange(t, stop, length, dtype=np.int64))
        kinds.append(sig)
        counts.append(len(starts[-1]))
        t = stop
    return np.concatenate(starts), np.repeat(np.array(kinds, np.int64), counts)


def encode(score: symusic.Score, vocab: Vocabulary) -> np.ndarray:
    """Encode ``score`` to token ids (int64), from BOS to EOS.

    Notes are quantized to the grid; durations longer than the longest Duration token are
    clipped to it; velocities and tempos go to their bins.
    """
    return encode_many(note_table([score]), vocab)[0]


def encode_many(table: NoteTable, vocab: Vocabulary) -> list[np.ndarray]:
    """:func:`encode` of each Score of ``table``, in one vectorized pass over all of them.

    The pieces are laid end to end on one time line (each starts one step after the last
    note of the one before, on its own bar grid), so every step below runs once for the
    batch: for small files the cost is otherwise mostly numpy's overhead per call.
    """
    if len(table) >= 1 << 16:
        raise ValueError(f"encode_many takes at most {(1 << 16) - 1} scores at once")
    if not len(table):
        return []
    cfg, off = vocab.config, vocab.offsets
    count = len(table)
    tracks, headers = assign_tracks(table, cfg.tracks) if vocab.has_tracks else (None, [])
    notes = grid_notes(table, cfg.steps_per_quarter, cfg.micro, tracks)
    per_piece = table.notes
    if tracks is not None:
        notes = one_note_per_pitch(notes)
        per_piece = np.bincount(notes["piece"], minlength=count)
    # Each piece's last onset (notes sort by piece, then time) and its place on the line.
    ends = np.cumsum(per_piece).tolist()
    counts = per_piece.tolist()
    last = [int(notes["time"][e - 1]) if n else 0 for e, n in zip(ends, counts, strict=True)]
    start = list(itertools.accumulate((x + 1 for x in last[:-1]), initial=0))

    # Tempo changes: last one per time step, only when the bin changes, inside the bars.
    # Those past a piece's last onset go first: they follow all others of their piece, so
    # neither rule looks at them, and what is left of each piece lies in its own span.
    tempo_times, tempo_mspq, bar_times, bar_kinds = [], [], [], []
    for k, a in enumerate(table.scores):
        t = np.rint(a.tempos["time"].astype(np.float64) * cfg.steps_per_quarter / a.tpq)
        inside = t <= last[k]
        tempo_times.append(t[inside].astype(np.int64) + start[k])
        tempo_mspq.append(a.tempos["mspq"][inside].astype(np.int64))
        starts, sigs = _bars(a.tpq, a.time_signatures, vocab, last[k])
        inside = starts <= last[k]
        bar_times.append(starts[inside] + start[k])
        bar_kinds.append(sigs[inside])
    t_time = np.concatenate(tempo_times)
    t_bin = tempo_bin(60_000_000 / np.maximum(np.concatenate(tempo_mspq), 1), vocab)
    keep = _run_ends(t_time)
    t_time, t_bin = t_time[keep], t_bin[keep]
    changed = _run_starts(t_bin)
    if count > 1:  # each piece's first tempo is a change
        changed |= _run_starts(np.repeat(np.arange(count), [len(t) for t in tempo_times])[keep])
    t_time, t_bin = t_time[changed], t_bin[changed]

    # Bar rows: Bar, TimeSig where the signature changes (and at each piece's first bar).
    bar_starts, bar_sigs = np.concatenate(bar_times), np.concatenate(bar_kinds)
    sig_change = _run_starts(bar_sigs)
    sig_change[np.cumsum([0] + [len(b) for b in bar_times[:-1]])] = True
    bar_rows = np.full((len(bar_starts), 5), -1, np.int32)
    bar_rows[:, 0] = off[TokenType.BAR]
    bar_rows[sig_change, 1] = off[TokenType.TIMESIG] + bar_sigs[sig_change]

    # Position rows: every time with a note or a tempo change.
    note_time = notes["time"] + np.array(start)[notes["piece"]] if count > 1 else notes["time"]
    pos_times = _sorted_unique(np.concatenate([note_time, t_time]))
    bar_of = np.searchsorted(bar_starts, pos_times, side="right") - 1
    pos_rows = np.full((len(pos_times), 5), -1, np.int32)
    has_tempo = np.zeros(len(pos_times), bool)
    pos_rows[:, 0] = off[TokenType.POSITION] + pos_times - bar_starts[bar_of]
    if len(t_time):  # t_time is sorted and unique: look each position up in it
        at = np.searchsorted(t_time, pos_times).clip(max=len(t_time) - 1)
        has_tempo = t_time[at] == pos_times
        pos_rows[has_tempo, 1] = off[TokenType.TEMPO] + t_bin[at[has_tempo]]

    # Note rows: Program (or Track) only where it changes inside a position.
    n = len(note_time)
    part = notes["track"] if tracks is not None else notes["program"]
    new_program = _run_starts(note_time) | _run_starts(part)
    max_dur = vocab.counts[TokenType.DURATION]
    note_rows = np.empty((n, 5), np.int32)
    first_id = off[TokenType.TRACK] if tracks is not None else off[TokenType.PROGRAM]
    note_rows[:, 0] = np.where(new_program, first_id + part, -1)
    note_rows[:, 1] = off[TokenType.PITCH] + notes["pitch"]
    note_rows[:, 2] = off[TokenType.VELOCITY] + _velocity_lut(cfg.velocity_bins)[notes["velocity"]]
    micro_id = off[TokenType.MICROTIMING] + notes["offset"] + cfg.micro // 2
    note_rows[:, 3] = np.where(notes["offset"] != 0, micro_id, -1)  # omitted when on the grid
    note_rows[:, 4] = off[TokenType.DURATION] + np.minimum(notes["duration"], max_dur) - 1

    # BOS opens and EOS closes each piece: rows of their own, first and last at its times.
    frame_rows = np.full((2 * count, 5), -1, np.int32)
    frame_rows[:count, 0], frame_rows[count:, 0] = BOS, EOS
    head_rows, head_piece = _header_rows(headers, vocab)
    rows = np.concatenate([frame_rows, head_rows, bar_rows, pos_rows, note_rows])
    time = np.concatenate([start, np.add(start, last), np.array(start, np.int64)[head_piece],
                           bar_starts, pos_times, note_time])  # fmt: skip
    kind = np.repeat(
        [_BOS_ROW, _EOS_ROW, _HEADER_ROW, _BAR_ROW, _POSITION_ROW, _NOTE_ROW],
        [count, count, len(head_rows), len(bar_rows), len(pos_rows), n],
    )
    order = np.argsort(time * 6 + kind, kind="stable")  # stable: keeps note order
    flat = rows[order].ravel()
    ids = flat[flat >= 0].astype(np.int64)
    if count == 1:
        return [ids]
    # Pieces follow each other on the time line; each holds BOS and EOS, Bar and any
    # TimeSig per bar, Position and any Tempo per position, and per note Pitch, Velocity,
    # Duration and any Program and MicroTiming. The pieces are views of one array.
    pos_piece = np.searchsorted(start, pos_times, side="right") - 1
    bar_piece = np.repeat(np.arange(count), [len(b) for b in bar_times])
    tokens = (
        2
        + np.bincount(head_piece, (head_rows >= 0).sum(1), count)
        + np.bincount(bar_piece, 1 + sig_change, count)
        + np.bincount(pos_piece, 1 + has_tempo, count)
        + np.bincount(notes["piece"], 3 + new_program + (notes["offset"] != 0), count)
    ).astype(np.int64)
    ends = np.cumsum(tokens).tolist()
    return [ids[e - n : e] for e, n in zip(ends, tokens.tolist(), strict=True)]


def _header_rows(headers: list[list[tuple[int, int]]], vocab: Vocabulary) -> tuple[np.ndarray,
                                                                               np.ndarray]:  # fmt: skip
    """One row ``Track_k Program_p [Voice_v]`` per declared track, and each row's piece."""
    off = vocab.offsets
    rows = np.full((sum(len(h) for h in headers), 5), -1, np.int32)
    piece = np.repeat(np.arange(len(headers)), [len(h) for h in headers]).astype(np.int64)
    flat = [(k, p, v) for h in headers for k, (p, v) in enumerate(h)]
    if flat:
        k, p, v = (np.array(x, np.int64) for x in zip(*flat, strict=True))
        rows[:, 0] = off[TokenType.TRACK] + k
        rows[:, 1] = off[TokenType.PROGRAM] + p
        rows[:, 2] = np.where(v >= 0, off[TokenType.VOICE] + v, -1)
    return rows, piece


def _run_starts(a: np.ndarray) -> np.ndarray:
    """True where an element differs from the one before it, and at the first."""
    out = np.ones(len(a), bool)
    out[1:] = a[1:] != a[:-1]
    return out


def _run_ends(a: np.ndarray) -> np.ndarray:
    """True where an element differs from the one after it, and at the last."""
    out = np.ones(len(a), bool)
    out[:-1] = a[:-1] != a[1:]
    return out


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    return x[_run_starts(x)]


@functools.cache
def _velocity_lut(bins: int) -> np.ndarray:
    """Bin index of every MIDI velocity 0..127 (a lookup beats the arithmetic per note)."""
    return velocity_bin(np.arange(128), bins)
