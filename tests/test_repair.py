"""Repairs: each one on a built file that needs it, and nothing done to files that do not."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import pytest
import symusic

from aurl.data.pipeline import SKIPPED, USED, IngestOptions, process_file
from aurl.midi.arrays import note_table
from aurl.midi.read import parse_midi_bytes
from aurl.midi.repair import (
    close_open_notes,
    cut_trailing_gap,
    drop_absurd_tempos,
    drop_empty_tracks,
    end_overlapping_notes,
    lengthen_zero_length_notes,
    may_have_open_notes,
    may_need_repair,
    repair_score,
)
from aurl.tokens import Tokenizer

TPQ = 96
BAR = 4 * TPQ


def On(pitch: int, time: int = 0, channel: int = 0) -> mido.Message:  # noqa: N802
    return mido.Message("note_on", note=pitch, velocity=80, time=time, channel=channel)


def Off(pitch: int, time: int = 0, channel: int = 0) -> mido.Message:  # noqa: N802
    return mido.Message("note_off", note=pitch, velocity=0, time=time, channel=channel)


def midi_bytes(*tracks: list) -> bytes:
    """A format-1 file with one track per list of mido messages (delta times)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    for messages in tracks:
        midi.tracks.append(mido.MidiTrack(messages))
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()


def score_of(*tracks: list[tuple[int, int, int]], program: int = 0) -> symusic.Score:
    """A score with one track per list of (time, duration, pitch) notes."""
    score = symusic.Score(TPQ)
    for notes in tracks:
        track = symusic.Track("", program, False)
        for time, duration, pitch in notes:
            track.notes.append(symusic.Note(time, duration, pitch, 80))
        score.tracks.append(track)
    return score


def notes_of(score: symusic.Score) -> list[list[tuple[int, int, int]]]:
    return [[(n.time, n.duration, n.pitch) for n in t.notes] for t in score.tracks]


def test_clean_score_is_returned_as_it_is():
    score = score_of([(0, 96, 60), (96, 96, 60), (0, 192, 64)])
    score.tempos.append(symusic.Tempo(0, 120.0))
    repaired, done = repair_score(score)
    assert repaired is score and done == []
    data = midi_bytes([On(60), Off(60, 96)])
    assert close_open_notes(data) == (data, 0)


def test_clipped_data_bytes_are_reported(tmp_path):
    data = bytearray(midi_bytes([On(60), Off(60, 96), On(62), Off(62, 96)]))
    at = data.index(bytes([0x90, 62, 80]))
    data[at + 2] = 200  # a velocity above 127
    parsed = parse_midi_bytes(bytes(data), "bad.mid")
    assert parsed.clipped and parsed.score.note_num() == 2
    assert max(n.velocity for n in parsed.score.tracks[0].notes) == 127
    assert parse_midi_bytes(midi_bytes([On(60), Off(60, 96)])).clipped is False
    data[at + 1] = 200  # now the pitch too: clipped to 127, its note-off no longer matches
    result = process_file(0, _write(tmp_path, bytes(data)), Tokenizer(), IngestOptions())
    assert result.status == USED and result.notes == 2
    assert result.repairs == ["clipped_data_bytes", "closed_open_notes"]


def test_open_notes_are_closed_at_the_end_of_their_track():
    data = midi_bytes(
        [On(60), On(62), Off(62, 96), mido.MetaMessage("end_of_track", time=200)],
        [On(36, channel=9), On(38, 48, channel=9)],  # a drum track of note-ons only
    )
    parsed = parse_midi_bytes(data).score
    assert notes_of(parsed) == [[(0, 96, 62)], []]  # symusic drops what is never closed
    assert may_have_open_notes(parsed)
    fixed, closed = close_open_notes(data)
    assert closed == 3
    assert notes_of(symusic.Score.from_midi(fixed)) == [
        [(0, 296, 60), (0, 96, 62)],
        [(0, 48, 36), (48, 0, 38)],
    ]


def test_open_note_ends_at_the_next_note_of_its_pitch(tmp_path):
    data = midi_bytes([On(60), On(60, 96), Off(60, 96)])  # the second note-on is never closed
    result = process_file(0, _write(tmp_path, data), Tokenizer(), IngestOptions(scan_all=True))
    assert result.status == USED
    assert result.repairs == ["closed_open_notes", "overlapping_notes"]
    fixed, _ = close_open_notes(data)
    score, _ = repair_score(symusic.Score.from_midi(fixed))
    assert notes_of(score) == [[(0, 96, 60), (96, 96, 60)]]


def test_file_of_open_notes_only_is_read(tmp_path):
    data = midi_bytes([mido.Message("program_change", program=5), On(64, 32)])
    result = process_file(0, _write(tmp_path, data), Tokenizer(), IngestOptions())
    assert result.status == USED and result.notes == 1
    assert result.repairs == ["closed_open_notes", "zero_length_notes"]


def test_track_without_end_of_track_is_closed():
    body = bytes([0x00, 0x90, 60, 80, 0x60, 0x90, 62, 80, 0x00, 0x80, 62, 0])  # 60 left open
    data = b"MThd\0\0\0\x06\0\x00\0\x01\0\x60MTrk" + len(body).to_bytes(4, "big") + body
    fixed, closed = close_open_notes(data)
    assert closed == 1
    assert notes_of(symusic.Score.from_midi(fixed)) == [[(0, 96, 60), (96, 0, 62)]]


def test_zero_length_notes_get_a_32nd():
    score = score_of([(0, 0, 60), (10, 20, 62)])
    fixed, count = lengthen_zero_length_notes(score)
    assert count == 1
    assert notes_of(fixed) == [[(0, TPQ // 8, 60), (10, 20, 62)]]
    assert notes_of(score)[0][0] == (0, 0, 60)  # the input is not modified


def test_overlapping_notes_of_one_pitch_end_where_the_next_starts():
    score = score_of(
        [(0, 100, 60), (50, 30, 60), (50, 100, 60), (20, 200, 64)],  # 64 overlaps no 64
        [(10, 100, 60)],  # another track: not compared with the first
    )
    fixed, count = end_overlapping_notes(score)
    assert count == 2  # one shortened, one of the two starting together dropped
    assert notes_of(fixed) == [[(0, 50, 60), (20, 200, 64), (50, 100, 60)], [(10, 100, 60)]]


def test_absurd_tempos_are_dropped():
    score = score_of([(0, 96, 60)])
    for time, bpm in ((0, 120.0), (96, 5.0), (192, 1000.0), (288, 90.0)):
        score.tempos.append(symusic.Tempo(time, bpm))
    fixed, count = drop_absurd_tempos(score)
    assert count == 2
    assert [(t.time, round(t.qpm)) for t in fixed.tempos] == [(0, 120), (288, 90)]
    assert len(score.tempos) == 4


def test_events_after_a_huge_gap_are_cut():
    near, far = 20 * BAR, 40 * BAR
    score = score_of([(0, 96, 60), (near, 96, 62), (near + far, 96, 64), (near + far, 96, 65)])
    fixed, count = cut_trailing_gap(score)
    assert count == 2
    assert notes_of(fixed) == [[(0, 96, 60), (near, 96, 62)]]
    # The bar length comes from the time signature: 30 bars of 4/4 are 40 bars of 3/4.
    gap = 30 * BAR
    score = score_of([(0, 96, 60), (96 + gap, 96, 62)])
    assert cut_trailing_gap(score)[1] == 0
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    assert cut_trailing_gap(score)[1] == 1


def test_empty_tracks_are_dropped():
    score = score_of([(0, 96, 60)], [], [(0, 96, 40)])
    fixed, count = drop_empty_tracks(score)
    assert count == 1 and notes_of(fixed) == [[(0, 96, 60)], [(0, 96, 40)]]
    assert len(score.tracks) == 3


def test_strict_skips_a_file_that_needs_repair(tmp_path):
    data = midi_bytes([On(60), On(60, 48), Off(60, 48), Off(60, 48)])  # overlapping 60s
    path = _write(tmp_path, data)
    lenient = process_file(0, path, Tokenizer(), IngestOptions())
    assert lenient.status == USED and lenient.repairs == ["overlapping_notes"]
    strict = process_file(0, path, Tokenizer(), IngestOptions(strict=True))
    assert strict.status == SKIPPED and strict.stage == "repair"
    assert strict.reason == "needs repair: overlapping_notes"


def _write(folder: Path, data: bytes) -> str:
    path = folder / "built.mid"
    path.write_bytes(data)
    return str(path)


def _needing(name: str) -> symusic.Score:
    """A score that needs exactly the repair ``name``."""
    if name == "absurd_tempos":
        score = score_of([(0, 96, 60)])
        score.tempos.append(symusic.Tempo(0, 600.0))
        return score
    if name == "zero_length_notes":
        return score_of([(0, 0, 60)])
    if name == "overlapping_notes":
        return score_of([(0, 96, 60), (0, 48, 60)])
    if name == "trailing_gap":
        return score_of([(0, 96, 60), (96 + 33 * BAR, 96, 60)])
    return score_of([(0, 96, 60)], [])  # empty_tracks


@pytest.mark.parametrize(
    "name", ["absurd_tempos", "zero_length_notes", "overlapping_notes", "trailing_gap",
             "empty_tracks"],
)  # fmt: skip
def test_repair_score_finds_each_repair(name):
    score = _needing(name)
    fixed, done = repair_score(score)
    assert done == [name] and fixed is not score
    assert repair_score(fixed) == (fixed, [])  # repaired once, nothing left to do


def test_the_repair_check_of_a_batch_equals_one_at_a_time(bach_source):
    names = ["absurd_tempos", "zero_length_notes", "overlapping_notes", "trailing_gap",
             "empty_tracks"]  # fmt: skip
    clean = [symusic.Score(str(p)) for p in bach_source.files[:12]]
    scores = clean[:4] + [_needing(n) for n in names] + clean[4:] + [symusic.Score(480)]
    alone = [may_need_repair(note_table([s]))[0] for s in scores]
    assert alone == [False] * 4 + [True] * 5 + [False] * 8 + [False]
    for size in (3, 8, len(scores)):
        together = []
        for first in range(0, len(scores), size):
            together += may_need_repair(note_table(scores[first : first + size]))
        assert together == alone
