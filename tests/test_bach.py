"""The default corpus: music21's Bach chorales converted to MIDI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic

from aurl.data import bach
from aurl.data.bach import (
    AS_WRITTEN,
    SKIPPED_FILE,
    bach_chorale_paths,
    convert_bach_chorales,
    midi_names,
)

HANDFUL = ["bwv269", "bwv1.6", "bwv67.4.xml", "bwv277.krn"]


def test_chorale_paths_are_the_music21_bach_scores():
    from music21 import corpus

    paths = bach_chorale_paths()
    assert len(paths) == 412
    assert paths == sorted(paths, key=lambda p: p.name)
    assert all(p.is_file() for p in paths)
    assert "bwv846" not in {p.stem for p in paths}
    composer = {Path(p) for p in corpus.getComposer("bach") if Path(p).parent.name == "bach"}
    assert set(paths) == {p for p in composer if p.stem != "bwv846"}


def test_midi_names_are_unique_and_keep_musicxml_stem():
    paths = bach_chorale_paths()
    names = midi_names(paths)
    assert len(set(names.values())) == len(paths)
    by_file = {p.name: n for p, n in names.items()}
    assert by_file["bwv277.mxl"] == "bwv277"
    assert by_file["bwv277.krn"] == "bwv277-krn"
    assert by_file["bwv269.mxl"] == "bwv269"


def _read(path: Path) -> symusic.Score:
    return symusic.Score.from_file(str(path))


def test_convert_handful_then_cached(tmp_path, monkeypatch):
    report = convert_bach_chorales(tmp_path, workers=2, progress=False, names=HANDFUL)
    assert [p.name for p in report.written] == [
        "bwv1.6.mid", "bwv269.mid", "bwv277-krn.mid", "bwv67.4.mid"
    ]  # fmt: skip
    # music21 cannot expand this Humdrum file's repeats: it is converted as notated.
    assert report.skipped == []
    assert report.as_written == [(tmp_path / "bwv277-krn.mid", AS_WRITTEN)]
    assert (tmp_path / SKIPPED_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]

    for path in report.written:
        score = _read(path)
        voiced = [t for t in score.tracks if len(t.notes)]
        assert len(voiced) >= 4  # SATB, plus instruments in some chorales
        assert len(score.tempos) >= 1 and len(score.time_signatures) >= 1
        step = score.tpq // 12  # 16ths and 8th-note triplets
        for track in voiced:
            notes = track.notes.numpy()
            assert not np.any(notes["time"] % step) and not np.any(notes["duration"] % step)

    # bwv269 has a repeat: 63 quarters as written, 84 once expanded.
    score = _read(tmp_path / "bwv269.mid")
    assert score.end() / score.tpq == pytest.approx(84.0)

    mtimes = {p: p.stat().st_mtime_ns for p in report.written}

    def must_not_parse(path):
        raise AssertionError(f"parsed {path} again")

    monkeypatch.setattr(bach, "chorale_to_midi_bytes", must_not_parse)
    again = convert_bach_chorales(tmp_path, workers=1, progress=False, names=HANDFUL)
    assert again.written == report.written
    assert again.skipped == report.skipped and again.as_written == report.as_written
    assert {p: p.stat().st_mtime_ns for p in again.written} == mtimes


def test_one_failure_is_reported_and_the_rest_written(tmp_path, monkeypatch):
    real = bach.chorale_to_midi_bytes

    def flaky(path):
        if Path(path).stem == "bwv269":
            raise RuntimeError("boom\nsecond line")
        return real(path)

    monkeypatch.setattr(bach, "chorale_to_midi_bytes", flaky)
    report = convert_bach_chorales(tmp_path, workers=1, progress=False, names=["bwv269", "bwv1.6"])
    assert report.skipped == [("bwv269.mxl", "RuntimeError: boom")]
    assert [p.name for p in report.written] == ["bwv1.6.mid"]
    assert not (tmp_path / "bwv269.mid").exists()


def test_bogus_score_in_pool_is_skipped(tmp_path, monkeypatch):
    bogus = tmp_path / "src" / "bogus.mxl"
    bogus.parent.mkdir()
    bogus.write_bytes(b"this is not a zip file")
    real = [p for p in bach_chorale_paths() if p.stem in ("bwv269", "bwv1.6")]
    monkeypatch.setattr(bach, "bach_chorale_paths", lambda: [*real, bogus])
    out = tmp_path / "out"

    report = convert_bach_chorales(out, workers=2, progress=False)
    assert [p.name for p in report.written] == ["bwv1.6.mid", "bwv269.mid"]
    assert len(report.skipped) == 1
    name, reason = report.skipped[0]
    assert name == "bogus.mxl"
    assert reason and "\n" not in reason
    assert sorted(p.name for p in out.iterdir()) == [SKIPPED_FILE, "bwv1.6.mid", "bwv269.mid"]


def test_limit(tmp_path):
    report = convert_bach_chorales(tmp_path, workers=1, progress=False, limit=1)
    assert [p.name for p in report.written] == ["bwv1.6.mid"]
    assert report.skipped == []


def test_badly_formed_repeats_are_converted_as_notated():
    from music21 import bar, meter, note, stream

    score, part = stream.Score(), stream.Part()
    for k in range(4):
        measure = stream.Measure(number=k + 1)
        if k == 0:
            measure.append(meter.TimeSignature("4/4"))
        measure.append(note.Note(60 + k, type="whole"))
        part.append(measure)
    bars = list(part.getElementsByClass(stream.Measure))
    bars[1].rightBarline = bar.Repeat(direction="end")  # an end, then a start never closed
    bars[2].leftBarline = bar.Repeat(direction="start")
    score.append(part)
    data, note_text = bach._score_to_midi_bytes(score)
    assert note_text == AS_WRITTEN
    midi = symusic.Score.from_midi(data)
    pitches = sorted(int(n.pitch) for t in midi.tracks for n in t.notes)
    assert pitches == [60, 61, 62, 63] and midi.end() / midi.tpq == pytest.approx(16.0)
