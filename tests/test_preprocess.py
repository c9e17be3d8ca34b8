"""Preprocessing and metadata: each step against its musical meaning."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.data.metadata import piece_metadata
from aurl.data.preprocess import (
    PreprocessConfig,
    map_program_families,
    merge_tracks_by_program,
    normalize_velocity,
    preprocess,
    reduce_polyphony,
)


def track(
    program: int, notes: list[tuple[int, int, int, int]], drum: bool = False
) -> symusic.Track:
    t = symusic.Track("t", program, drum)
    for n in notes:
        t.notes.append(symusic.Note(*n))
    return t


def score_of(*tracks: symusic.Track) -> symusic.Score:
    s = symusic.Score(12)
    s.tracks.extend(list(tracks))
    return s


def pitches_at(score: symusic.Score, time: int) -> list[int]:
    return sorted(n.pitch for t in score.tracks if not t.is_drum for n in t.notes
                  if n.time <= time < n.end)  # fmt: skip


def test_polyphony_keeps_bass_and_top():
    chord = [(0, 24, p, 80) for p in (48, 52, 55, 60, 64, 67, 72)]
    drums = track(0, [(0, 1, 36, 100), (0, 1, 42, 100)], drum=True)
    out = reduce_polyphony(score_of(track(0, chord), drums), 3)
    kept = pitches_at(out, 0)
    assert len(kept) == 3 and kept[0] == 48 and kept[-1] == 72
    assert out.tracks[1].note_num() == 2  # drums untouched


def test_polyphony_cuts_an_inner_note_for_a_new_top_voice():
    held = [(0, 48, 48, 80), (0, 48, 55, 80), (0, 48, 60, 80)]
    melody = [(24, 12, 79, 90)]
    out = reduce_polyphony(score_of(track(0, held), track(40, melody)), 3)
    assert pitches_at(out, 24) == [48, 60, 79]  # 55 ends where the new top voice starts
    assert pitches_at(out, 0) == [48, 55, 60]


def test_polyphony_never_exceeds_the_limit(bach_source):
    from aurl.midi import read_midi

    score = read_midi(bach_source.files[3])
    out = reduce_polyphony(score, 2)
    grid = out.resample(12, min_dur=1)
    ends = max(n.end for t in grid.tracks for n in t.notes)
    for time in range(0, ends, 3):
        assert len(pitches_at(grid, time)) <= 2


def test_velocity_normalization_keeps_the_shape():
    notes = [(i * 12, 12, 60, v) for i, v in enumerate((20, 30, 40, 50, 60))]
    out = normalize_velocity(score_of(track(0, notes)), target=100)
    v = np.array([n.velocity for n in out.tracks[0].notes])
    assert np.all(np.diff(v) > 0)  # still a crescendo
    assert abs(np.percentile(v, 95) - 100) <= 2 and v[0] > 20


def test_tracks_merge_by_program_and_families():
    s = score_of(track(0, [(0, 12, 60, 80)]), track(0, [(12, 12, 62, 80)]), track(27, [(0, 12, 50, 80)]),
                 track(0, [(0, 1, 36, 90)], drum=True), track(5, []))  # fmt: skip
    merged = merge_tracks_by_program(s)
    assert sorted((t.is_drum, t.program, t.note_num()) for t in merged.tracks if t.note_num()) == [
        (False, 0, 2), (False, 27, 1), (True, 0, 1)]  # fmt: skip
    assert sorted(t.program for t in map_program_families(s).tracks if not t.is_drum) == [
        0,
        0,
        0,
        24,
    ]
    out = preprocess(s, PreprocessConfig(merge_tracks=True, program_families=True))
    assert all(t.note_num() for t in out.tracks) and len(out.tracks) == 3
    assert s.tracks[2].program == 27  # the input is untouched


def test_metadata_of_a_chorale(bach_source):
    from aurl.midi import read_midi

    path = next(p for p in bach_source.files if p.stem == "bwv269")
    meta = piece_metadata(read_midi(path), str(path))
    assert meta["key"]["name"] == "G major"
    assert meta["time_signatures"] == ["3/4"] and meta["programs"] == [0]
    assert meta["notes"] > 200 and meta["seconds"] > 10 and meta["notes_per_second"] > 1


def test_seconds_follow_the_tempo_map():
    from aurl.data.metadata import seconds_at

    s = score_of(track(0, [(0, 96, 60, 80)]))
    s.tempos.append(symusic.Tempo(0, 120.0))
    s.tempos.append(symusic.Tempo(48, 60.0))  # after 4 quarters at 120, 4 at 60
    assert abs(seconds_at(s, 96) - (2.0 + 4.0)) < 1e-6
    assert abs(seconds_at(s, 96) - s.to("second").end()) < 1e-3
