"""Repair what real-world MIDI files get wrong, and say what was repaired.

Every repair is a pure function: it returns a new Score (or new bytes) and how many things
it changed, and returns its input unchanged when there is nothing to do. The names in
:data:`REPAIRS` are the ones reported per file, in the order the repairs run:

- ``clipped_data_bytes``: data bytes above 127 were clipped to read the file (done while
  reading, see :func:`aurl.midi.read.parse_midi_bytes`).
- ``closed_open_notes``: note-ons never closed (symusic drops them) get a note-off at the end
  of their track; ``overlapping_notes`` then ends each at the next note-on of its pitch.
- ``absurd_tempos``: tempo changes outside ``[MIN_BPM, MAX_BPM]`` are dropped.
- ``zero_length_notes``: notes of no length get ``MIN_NOTE_FRACTION`` of a quarter.
- ``overlapping_notes``: a note overlapping the next note of its pitch in its track ends
  where that one starts; of several starting together, the longest is kept.
- ``trailing_gap``: everything after more than ``GAP_BARS`` bars of silence is cut.
- ``empty_tracks``: tracks without notes are dropped.
"""

from __future__ import annotations

import numpy as np
import symusic

from aurl.midi.arrays import NoteTable, ScoreArrays, note_table

REPAIRS = (
    "clipped_data_bytes",
    "closed_open_notes",
    "absurd_tempos",
    "zero_length_notes",
    "overlapping_notes",
    "trailing_gap",
    "empty_tracks",
)
MIN_BPM, MAX_BPM = 10.0, 500.0
MIN_NOTE_FRACTION = 8  # zero-length notes become a 32nd note: a quarter / 8
GAP_BARS = 32


def repair_score(
    score: symusic.Score, arrays: ScoreArrays | None = None
) -> tuple[symusic.Score, list[str]]:
    """Apply every Score-level repair in order.

    Args:
        score: A tick-based Score; it is not modified.
        arrays: ``score_arrays(score)``, if the caller has it already.

    Returns:
        The repaired Score (``score`` itself when nothing needed repair) and the names of
        the repairs that changed something, in the order they ran.
    """
    if not may_need_repair(note_table([score], None if arrays is None else [arrays]))[0]:
        return score, []
    return apply_repairs(score)


def apply_repairs(score: symusic.Score) -> tuple[symusic.Score, list[str]]:
    """Run every Score-level repair in order, without the quick check of
    :func:`may_need_repair` first; returns the Score and the repairs that changed it."""
    done = []
    for name, fix in (
        ("absurd_tempos", drop_absurd_tempos),
        ("zero_length_notes", lengthen_zero_length_notes),
        ("overlapping_notes", end_overlapping_notes),
        ("trailing_gap", cut_trailing_gap),
        ("empty_tracks", drop_empty_tracks),
    ):
        score, changed = fix(score)
        if changed:
            done.append(name)
    return score, done


def may_need_repair(table: NoteTable) -> list[bool]:
    """For each Score of ``table``, whether any Score-level repair could change something.

    Most files need none, and running every repair on its own costs several passes; this
    looks at all notes of all the Scores in one vectorized pass. It may say yes where the
    repairs then find nothing (the gap test uses the shortest bar), never no where one would.
    """
    count = len(table)
    flagged = table.empty_track.copy()  # a track to drop
    tempos = [a.tempos["mspq"] for a in table.scores]
    if any(len(t) for t in tempos):
        mspq = np.concatenate(tempos)
        absurd = (mspq < 60e6 / MAX_BPM) | (mspq > 60e6 / MIN_BPM)
        owner = np.repeat(np.arange(count), [len(t) for t in tempos])
        flagged |= np.bincount(owner[absurd], minlength=count) > 0
    # The gap limit: GAP_BARS of each piece's shortest bar (4/4 where none is shorter);
    # _bar_ticks looks closer.
    bars = np.full(count, 4.0)
    sigs = [a.time_signatures for a in table.scores]
    if any(len(s["time"]) for s in sigs):
        num, den = (np.concatenate([s[k] for s in sigs]).astype(np.float64)
                    for k in ("numerator", "denominator"))  # fmt: skip
        owner = np.repeat(np.arange(count), [len(s["time"]) for s in sigs])
        np.minimum.at(bars, owner, 4.0 * num / np.maximum(den, 1))
    limits = GAP_BARS * np.maximum(bars, 0.25) * np.array([a.tpq for a in table.scores])
    time, duration, piece = table.time, table.duration, table.piece
    if not len(time):
        return flagged.tolist()
    flagged |= np.bincount(piece[duration <= 0], minlength=count) > 0  # zero-length notes
    # Notes of one track and pitch in time order, by one sort of a single int64 key
    # (track, pitch, time); ticks are int32. Overlapping neighbours (or notes starting
    # together) need the overlap repair.
    voice = table.track << 7 | table.pitch
    order = np.argsort(voice << 31 | time)
    v, t, d = voice[order], time[order], duration[order]
    overlap = (v[1:] == v[:-1]) & (t[:-1] + d[:-1] > t[1:])
    flagged |= np.bincount(piece[order][1:][overlap], minlength=count) > 0
    # A silence longer than the limit before a later note: the trailing-gap repair. Each
    # piece is moved past the end of the one before, so one running maximum serves all.
    end = time + np.maximum(duration, 0)
    last_end = np.zeros(count, np.int64)
    filled = table.notes > 0  # pieces are contiguous in the columns: reduce each run
    last_end[filled] = np.maximum.reduceat(end, table.starts[filled])
    shift = np.concatenate([[0], np.cumsum(last_end + 1)[:-1]])[piece]
    order = np.argsort(time + shift, kind="stable")
    p = piece[order]
    sounding = np.maximum.accumulate(end[order] + shift[order])
    gap = (p[1:] == p[:-1]) & ((time + shift)[order][1:] - sounding[:-1] > limits[p[1:]])
    flagged |= np.bincount(p[1:][gap], minlength=count) > 0
    return flagged.tolist()


def drop_absurd_tempos(score: symusic.Score) -> tuple[symusic.Score, int]:
    """Drop tempo changes below ``MIN_BPM`` or above ``MAX_BPM``; the tempo before each
    dropped change stays in force. Returns the Score and how many changes were dropped."""
    tempos = score.tempos.numpy()
    bpm = 60_000_000 / np.maximum(tempos["mspq"].astype(np.float64), 1.0)
    bad = (bpm < MIN_BPM) | (bpm > MAX_BPM)
    if not bad.any():
        return score, 0
    out = score.copy()
    keep = ~bad
    out.tempos = symusic.Tempo.from_numpy(
        np.ascontiguousarray(tempos["time"][keep]), np.ascontiguousarray(tempos["mspq"][keep])
    )
    return out, int(bad.sum())


def lengthen_zero_length_notes(score: symusic.Score) -> tuple[symusic.Score, int]:
    """Give notes of zero (or negative) length a 32nd note's length. Returns the Score and
    how many notes were lengthened."""
    least = max(1, score.tpq // MIN_NOTE_FRACTION)
    out, count = score, 0
    for k, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        short = notes["duration"] <= 0
        if not short.any():
            continue
        if out is score:
            out = score.copy()
        notes["duration"][short] = least
        out.tracks[k].notes = _note_list(notes)
        count += int(short.sum())
    return out, count


def end_overlapping_notes(score: symusic.Score) -> tuple[symusic.Score, int]:
    """In each track, end a note where the next note of the same pitch starts if it would
    sound past it; of notes of one pitch starting together, keep only the longest. Returns
    the Score and how many notes were shortened or dropped."""
    out, count = score, 0
    for k, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        fixed, changed = _end_overlaps(notes)
        if not changed:
            continue
        if out is score:
            out = score.copy()
        out.tracks[k].notes = _note_list(fixed)
        count += changed
    return out, count


def _end_overlaps(notes: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The overlap repair on one track's note arrays; returns them sorted by time."""
    if len(notes["time"]) < 2:
        return notes, 0
    order = np.lexsort((notes["duration"], notes["time"], notes["pitch"]))
    time, pitch = notes["time"][order], notes["pitch"][order]
    duration = notes["duration"][order].copy()
    same_pitch = pitch[1:] == pitch[:-1]
    together = same_pitch & (time[1:] == time[:-1])  # drop the shorter of the pair
    overlap = same_pitch & ~together & (time[:-1] + duration[:-1] > time[1:])
    if not (together.any() or overlap.any()):
        return notes, 0
    shorten = np.flatnonzero(overlap)
    duration[shorten] = time[shorten + 1] - time[shorten]
    keep = np.ones(len(time), bool)
    keep[np.flatnonzero(together)] = False
    fixed = {k: v[order] for k, v in notes.items()}
    fixed["duration"] = duration
    fixed = {k: v[keep] for k, v in fixed.items()}
    by_time = np.lexsort((fixed["pitch"], fixed["time"]))
    return {k: v[by_time] for k, v in fixed.items()}, int(together.sum() + overlap.sum())


def cut_trailing_gap(score: symusic.Score, bars: int = GAP_BARS) -> tuple[symusic.Score, int]:
    """Cut everything from the first note that follows more than ``bars`` bars of silence
    (bars as long as the time signature in force when the silence starts; 4/4 if none).
    Returns the Score and how many notes were cut."""
    starts, ends = _note_spans(score)
    if len(starts) < 2:
        return score, 0
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    sounding_until = np.maximum.accumulate(ends)[:-1]  # before each later note
    gap = starts[1:] - sounding_until
    limit = bars * _bar_ticks(score, sounding_until)
    far = np.flatnonzero(gap > limit)
    if len(far) == 0:
        return score, 0
    cut = int(starts[far[0] + 1])
    return score.clip(0, cut, clip_end=False), int(len(starts) - far[0] - 1)


def _note_spans(score: symusic.Score) -> tuple[np.ndarray, np.ndarray]:
    """Start and end ticks of every note in the score."""
    starts, ends = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for track in score.tracks:
        notes = track.notes.numpy()
        starts.append(notes["time"].astype(np.int64))
        ends.append(starts[-1] + np.maximum(notes["duration"], 0))
    return np.concatenate(starts), np.concatenate(ends)


def _bar_ticks(score: symusic.Score, times: np.ndarray) -> np.ndarray:
    """Length in ticks of the bar in force at each of ``times``."""
    sigs = score.time_signatures.numpy()
    sig_times = np.concatenate([[0], sigs["time"]]).astype(np.int64)  # 4/4 until the first
    quarters = np.concatenate(
        [[4.0], 4.0 * sigs["numerator"].astype(np.float64) / np.maximum(sigs["denominator"], 1)]
    )
    at = np.searchsorted(sig_times, times, side="right") - 1
    return np.maximum(quarters[at], 0.25) * score.tpq


def drop_empty_tracks(score: symusic.Score) -> tuple[symusic.Score, int]:
    """Drop tracks with no notes. Returns the Score and how many tracks were dropped."""
    empty = [k for k, track in enumerate(score.tracks) if track.note_num() == 0]
    if not empty:
        return score, 0
    out = score.copy()
    for k in reversed(empty):
        out.tracks.pop(k)
    return out, len(empty)


def _note_list(notes: dict[str, np.ndarray]):
    """A symusic note list from note arrays."""
    return symusic.Note.from_numpy(
        *(np.ascontiguousarray(notes[k]) for k in ("time", "duration", "pitch", "velocity"))
    )


def may_have_open_notes(score: symusic.Score) -> bool:
    """Whether a parsed Score shows the sign of note-ons that were never closed.

    symusic drops such notes, so a file (or a track) holding only those comes out without
    notes: the cheap sign is a Score with no notes or with a track that has none.
    """
    return score.note_num() == 0 or any(track.note_num() == 0 for track in score.tracks)


def close_open_notes(data: bytes) -> tuple[bytes, int]:
    """Add a note-off at the end of its track for every note-on that is never closed.

    The note-offs go just before the track's end-of-track event (or after its last event),
    so that a parser pairing note-ons and note-offs first-in first-out keeps every note.
    Tracks that cannot be scanned cleanly are left as they are.

    Args:
        data: The bytes of a MIDI file that symusic can parse.

    Returns:
        The new bytes (``data`` itself when no note was open) and how many notes were closed.
    """
    if len(data) < 8:
        return data, 0
    pos = 8 + int.from_bytes(data[4:8], "big")
    parts, closed = [data[:pos]], 0
    while pos + 8 <= len(data):
        chunk, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break  # a truncated last chunk stays as it is
        if chunk == b"MTrk":
            body, count = _close_track(body)
            closed += count
        parts.append(chunk + len(body).to_bytes(4, "big") + body)
        pos += 8 + length
    if closed == 0:
        return data, 0
    parts.append(data[pos:])
    return b"".join(parts), closed


def _close_track(body: bytes) -> tuple[bytes, int]:
    """One track chunk's body with its open notes closed, and how many there were."""
    scan = _scan_track(body)
    if scan is None:
        return body, 0
    pending, end, delta, after_delta = scan
    offs = [(key, n) for key, n in sorted(pending.items()) if n > 0]
    if not offs:
        return body, 0
    events = [bytes([0x80 | key >> 7, key & 0x7F, 0]) for key, n in offs for _ in range(n)]
    inserted = _vlq(delta) + b"\x00".join(events)
    rest = b"\x00" + body[after_delta:] if after_delta < len(body) else b""
    return body[:end] + inserted + rest, len(events)


def _scan_track(body: bytes) -> tuple[dict[int, int], int, int, int] | None:
    """Open note-ons per ``channel << 7 | pitch`` of one track, where its end-of-track
    event starts, that event's delta time and where its status byte starts (the track's
    length and a delta of 0 if it has none). None if the track does not scan cleanly."""
    pending: dict[int, int] = {}
    i, n, status = 0, len(body), 0
    while i < n:
        start = i
        delta, i = _read_vlq(body, i)
        if i >= n:
            return None
        byte = body[i]
        if byte >= 0x80:
            i += 1
            if byte == 0xFF:
                if i >= n:
                    return None
                if body[i] == 0x2F:
                    return pending, start, delta, i - 1
                length, i = _read_vlq(body, i + 1)
                i += length
                continue
            if byte in (0xF0, 0xF7):
                length, i = _read_vlq(body, i)
                i += length
                continue
            if byte > 0xF0:
                return None
            status = byte
        elif status == 0:
            return None
        kind = status & 0xF0
        size = 1 if kind in (0xC0, 0xD0) else 2
        if i + size > n:
            return None
        if kind in (0x80, 0x90):
            key = (status & 0x0F) << 7 | body[i]
            if kind == 0x90 and body[i + 1] > 0:
                pending[key] = pending.get(key, 0) + 1
            elif pending.get(key):
                pending[key] -= 1
        i += size
    return pending, n, 0, n


def _read_vlq(data: bytes, i: int) -> tuple[int, int]:
    """A variable-length quantity at ``i``: its value and the index after it."""
    value = 0
    for _ in range(4):
        if i >= len(data):
            break
        byte = data[i]
        i += 1
        value = value << 7 | byte & 0x7F
        if byte < 0x80:
            break
    return value, i


def _vlq(value: int) -> bytes:
    """Encode a variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | value & 0x7F)
        value >>= 7
    return bytes(reversed(out))
