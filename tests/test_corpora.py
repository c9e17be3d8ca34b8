"""Named corpora from music21: the registry, ABC tune splitting, conversion and caching."""

from __future__ import annotations

from pathlib import Path

import pytest

from aurl.data import bach
from aurl.data.bach import AS_WRITTEN, SKIPPED_FILE, ScoreRef, convert_scores
from aurl.data.corpora import (
    CORPORA,
    Corpus,
    abc_scores,
    abc_tunes,
    corpus_dir,
    get_corpus,
    list_corpora,
)
from aurl.data.prepare import prepare, summary
from aurl.data.sources import SourceError, resolve_source
from aurl.midi import read_midi

NAMED = {"bach", "palestrina", "quartets", "monteverdi", "essen", "ryans-mammoth", "oneills"}


def _pick(corpus: str, names: list[str]) -> list[ScoreRef]:
    refs = {r.name: r for r in get_corpus(corpus).scores()}
    return [refs[n] for n in names]


# A Humdrum file, a MusicXML file, two tunes of a multi-tune ABC file, and one tune whose
# split bar makes music21 share a TimeSignature between two measures.
KRN = _pick("palestrina", ["Credo_67_c"])
MXL = _pick("quartets", ["haydn/opus1no1/movement4"])
ABC = _pick("essen", ["altdeu10/0001", "altdeu10/0002"])
SHARED_TS = _pick("oneills", ["0001-0050/0001"])
ALL = KRN + MXL + ABC + SHARED_TS
BAD_REPEATS = _pick("ryans-mammoth", ["DownfallOfWaterStreetJig"])


def _notes(path: Path) -> int:
    return sum(len(track.notes) for track in read_midi(path).tracks)


def test_registry_lists_named_corpora_with_licences():
    rows = {row.name: row for row in list_corpora()}
    assert set(rows) >= NAMED
    assert next(iter(rows)) == "bach"
    for row in rows.values():
        assert len(row.licence) > 40 and len(row.description) > 10
        assert row.scores == len(CORPORA[row.name].scores()) > 0
    assert rows["bach"].scores == 412
    assert rows["palestrina"].scores == 1318
    assert "non-commercial" in rows["essen"].licence.lower()
    assert "John Miller" in rows["palestrina"].licence
    assert rows["essen"].scores > 8000  # many tunes per file, each its own piece


def test_quartets_keep_one_file_per_movement():
    names = [r.name for r in get_corpus("quartets").scores()]
    assert {n.split("/")[0] for n in names} == {"beethoven", "haydn", "mozart"}
    assert not [n for n in names if "k545" in n]  # a piano sonata
    assert len(names) == len(set(names)) == 46
    refs = {r.name: r for r in get_corpus("quartets").scores()}
    assert refs["beethoven/opus18no1/movement1"].path.suffix == ".mxl"  # not the .krn twin


def test_unknown_corpus_and_missing_folder_are_source_errors(tmp_path):
    with pytest.raises(KeyError, match="named corpora: bach"):
        get_corpus("nope")
    with pytest.raises(SourceError, match="named corpora: bach, palestrina"):
        resolve_source("nope")
    with pytest.raises(SourceError, match="no such folder"):
        resolve_source(str(tmp_path / "missing"))


def test_abc_tunes_split_with_file_header():
    text = "%abc-2.1\nL:1/8\nsome free text\n\nX:1\nT:One\nK:C\nCDEF|\n\nX: 2\nT:Two\nK:G\nGABc|\n"
    tunes = abc_tunes(text)
    assert [n for n, _ in tunes] == ["1", "2"]
    assert tunes[0][1] == "%abc-2.1\nL:1/8\nX:1\nT:One\nK:C\nCDEF|\n\n"
    assert tunes[1][1].startswith("%abc-2.1\nL:1/8\nX: 2\nT:Two")
    assert "One" not in tunes[1][1]
    assert abc_tunes("T:Lone\nK:C\nCDEF|\n") == [("", "T:Lone\nK:C\nCDEF|\n")]


def test_abc_scores_name_tunes_and_drop_repeated_music(tmp_path):
    many = tmp_path / "book.abc"
    many.write_text("X:1\nT:A\nK:C\nCDEF|\nX:2\nT:B\nK:C\nGABc|\nX:3\nT:A again\nK:C\nCDEF|\n")
    one = tmp_path / "sub" / "reel.abc"
    one.parent.mkdir()
    one.write_text("X:7\nT:Reel\nK:D\nDEFG|\n")
    refs = abc_scores([one, many], tmp_path)
    assert [(r.name, r.label) for r in refs] == [
        ("book/0001", "book.abc X:1"),
        ("book/0002", "book.abc X:2"),
        ("sub/reel", "sub/reel.abc X:7"),
    ]
    assert refs[1].tune and "GABc" in refs[1].tune and "CDEF" not in refs[1].tune


def test_convert_each_kind_then_cached(tmp_path, monkeypatch):
    report = convert_scores(ALL, tmp_path, workers=2, progress=False)
    assert report.skipped == []
    assert [p.relative_to(tmp_path).as_posix() for p in report.written] == [
        "0001-0050/0001.mid",
        "Credo_67_c.mid",
        "altdeu10/0001.mid",
        "altdeu10/0002.mid",
        "haydn/opus1no1/movement4.mid",
    ]
    for path in report.written:
        assert _notes(path) > 10
    quartet = read_midi(tmp_path / "haydn/opus1no1/movement4.mid")
    assert len([t for t in quartet.tracks if len(t.notes)]) == 4
    # Each tune is its own piece: the two tunes of one file differ.
    assert _notes(tmp_path / "altdeu10/0001.mid") != _notes(tmp_path / "altdeu10/0002.mid")

    mtimes = {p: p.stat().st_mtime_ns for p in report.written}

    def must_not_parse(*args):
        raise AssertionError(f"parsed {args} again")

    monkeypatch.setattr(bach, "chorale_to_midi_bytes", must_not_parse)
    monkeypatch.setattr(bach, "abc_tune_to_midi_bytes", must_not_parse)
    again = convert_scores(ALL, tmp_path, workers=1, progress=False)
    assert again.written == report.written and again.skipped == []
    assert {p: p.stat().st_mtime_ns for p in again.written} == mtimes


def test_failing_scores_are_skipped_with_reason(tmp_path, monkeypatch):
    bogus = tmp_path / "bogus.mxl"
    bogus.write_bytes(b"this is not a zip file")
    real = bach.abc_tune_to_midi_bytes

    def flaky(text):
        if "Herzog Ernst" in text:  # the title of altdeu10.abc X:2
            raise ValueError("unreadable tune\nmore detail")
        return real(text)

    monkeypatch.setattr(bach, "abc_tune_to_midi_bytes", flaky)
    out = tmp_path / "out"
    refs = [ScoreRef("bogus", bogus, "bogus.mxl"), *ABC, *BAD_REPEATS]
    report = convert_scores(refs, out, workers=1, progress=False)
    written = [p.relative_to(out).as_posix() for p in report.written]
    assert written == ["DownfallOfWaterStreetJig.mid", "altdeu10/0001.mid"]
    assert [label for label, _ in report.skipped] == ["altdeu10.abc X:2", "bogus.mxl"]
    # music21 itself cannot expand this tune's repeats: it is converted as notated.
    assert report.as_written == [(out / "DownfallOfWaterStreetJig.mid", AS_WRITTEN)]
    assert _notes(out / "DownfallOfWaterStreetJig.mid") > 10
    assert report.skipped[0][1] == "ValueError: unreadable tune"
    reason = report.skipped[1][1]
    assert reason.split(":")[0].isidentifier() and "\n" not in reason
    assert (out / SKIPPED_FILE).is_file()
    assert not (out / "altdeu10" / "0002.mid").exists()

    # A second run reports the same skips from the cache without parsing them again.
    monkeypatch.setattr(bach, "abc_tune_to_midi_bytes", lambda text: 1 / 0)
    monkeypatch.setattr(bach, "chorale_to_midi_bytes", lambda path: 1 / 0)
    again = convert_scores(refs, out, workers=1, progress=False)
    assert again.skipped == report.skipped and again.written == report.written


def test_a_bad_score_does_not_stop_the_pool(tmp_path):
    bogus = tmp_path / "bogus.mxl"
    bogus.write_bytes(b"this is not a zip file")
    refs = [ScoreRef("bogus", bogus, "bogus.mxl"), *ABC]
    report = convert_scores(refs, tmp_path / "out", workers=2, progress=False)
    assert [p.name for p in report.written] == ["0001.mid", "0002.mid"]
    assert [label for label, _ in report.skipped] == ["bogus.mxl"]


def test_resolve_named_corpus(monkeypatch):
    tiny = Corpus("tiny-test", "Two Essen tunes", "Test licence note.", lambda: list(ABC))
    monkeypatch.setitem(CORPORA, tiny.name, tiny)
    source = resolve_source("tiny-test", workers=1, progress=False)
    assert source.label == "tiny-test"
    assert source.licence == "Test licence note."
    assert source.root == corpus_dir("tiny-test")
    assert [source.identity(p) for p in source.files] == ["altdeu10/0001", "altdeu10/0002"]
    assert source.identities() == ["altdeu10/0001", "altdeu10/0002"]
    assert all(_notes(p) > 0 for p in source.files)
    first = resolve_source("tiny-test", workers=1, progress=False, limit=1)
    assert first.files == source.files[:1]


def test_scores_converted_as_notated_are_named_by_prepare(monkeypatch, tmp_path):
    tiny = Corpus("tiny-repeats", "A jig with badly formed repeats", "Note.", lambda: BAD_REPEATS)
    monkeypatch.setitem(CORPORA, tiny.name, tiny)
    source = resolve_source("tiny-repeats", workers=1, progress=False)
    assert source.as_written == [(source.files[0], AS_WRITTEN)]
    dataset = prepare(source, workers=0, progress=False, root=tmp_path)
    assert dataset.manifest["as_written"] == [{"file": str(source.files[0]), "note": AS_WRITTEN}]
    assert f"converted as notated 1: {AS_WRITTEN}" in summary(dataset)
