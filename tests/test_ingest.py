"""Bulk reading: crashes, hangs and errors are reported and the run goes on; duplicates;
strict mode; the edge-case corpus through prepare, against what other parsers read."""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import symusic

from aurl.analysis.key import find_key, find_keys
from aurl.data.digest import content_digest, content_digests
from aurl.data.metadata import piece_metadata, pieces_metadata
from aurl.data.pipeline import IngestOptions, process_chunk, process_file
from aurl.data.prepare import REPORT, prepare, summary
from aurl.data.shards import TOKENS
from aurl.data.sources import folder_source
from aurl.midi.arrays import note_table, score_arrays
from aurl.tokens import Tokenizer
from conftest import EDGE_CASES

TK = Tokenizer()
PARSERS = ("symusic", "pretty_midi", "mido", "miditoolkit", "muspy")


def fault_hook(stage: str, path: str) -> None:
    """Runs in the workers: misbehave on files named for it."""
    name = Path(path).stem
    if name == "abort" and stage == "encode":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file
        os.abort()
    if name == "hang" and stage == "repair":
        time.sleep(120)
    if name == "raise" and stage == "encode":
        raise ValueError("boom")


def _copy(files: list[Path], folder: Path, names: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(files):
        name = names[i] if names else path.name
        shutil.copyfile(path, folder / name)
    return folder


def _records(dataset) -> list[dict]:
    return [json.loads(line) for line in (dataset.path / REPORT).read_text().splitlines()]


@pytest.mark.slow
def test_crashed_hung_and_failing_files_are_reported_and_the_run_goes_on(bach_source, tmp_path):
    good = bach_source.files[:5]
    bad = bach_source.files[5:8]
    faulty = _copy(good, tmp_path / "faulty")
    _copy(bad, faulty, ["abort.mid", "hang.mid", "raise.mid"])
    start = time.monotonic()
    ds = prepare(folder_source(faulty), TK, workers=2, progress=False, root=tmp_path / "a",
                 timeout=1.0, hook=fault_hook)  # fmt: skip
    assert time.monotonic() - start < 60
    by_name = {Path(r["file"]).name: r for r in _records(ds)}
    assert len(by_name) == 8
    expected = {
        "abort.mid": ("encode", "worker crashed (killed by SIGABRT)"),
        "hang.mid": ("repair", "timed out after 1 s"),
        "raise.mid": ("encode", "ValueError: boom"),
    }
    for name, (stage, reason) in expected.items():
        assert by_name[name]["status"] == "skipped"
        assert (by_name[name]["stage"], by_name[name]["reason"]) == (stage, reason)
    assert all(by_name[p.name]["status"] == "used" for p in good)
    report = ds.manifest["report"]
    assert report["used"] == 5 and report["skipped"] == 3
    assert report["skipped_by_stage"] == {"encode": 2, "repair": 1}
    # The shards are what an unprotected run over the good files alone writes, in order.
    clean = prepare(folder_source(_copy(good, tmp_path / "clean")), TK, workers=0,
                    progress=False, root=tmp_path / "b")  # fmt: skip
    for split in ("train", "val", "test"):
        assert ds.manifest["splits"][split] == clean.manifest["splits"][split]
        ours, theirs = ds.split(split) / TOKENS, clean.split(split) / TOKENS
        assert ours.read_bytes() == theirs.read_bytes()


def test_duplicates_are_kept_once_and_named(bach_source, tmp_path):
    first, other = bach_source.files[0], bach_source.files[1]
    corpus = _copy([first, other, first], tmp_path / "c", ["a.mid", "b.mid", "c_copy.mid"])
    score = symusic.Score(str(first))
    score.resample(score.tpq * 2).dump_midi(str(corpus / "d_finer_grid.mid"))
    score.shift_pitch(2).dump_midi(str(corpus / "e_transposed.mid"))
    ds = prepare(folder_source(corpus), TK, workers=0, progress=False, root=tmp_path / "d")
    records = {Path(r["file"]).name: r for r in _records(ds)}
    assert [r["status"] for r in records.values()] == [
        "used", "used", "duplicate", "duplicate", "used"
    ]  # fmt: skip
    for name in ("c_copy.mid", "d_finer_grid.mid"):
        assert records[name]["duplicate_of"] == str(corpus / "a.mid")
        assert records[name]["reason"] == f"duplicate of {corpus / 'a.mid'}"
    report = ds.manifest["report"]
    assert report["duplicates"] == 2 and report["used"] == 3
    assert report["duplicate_of"] == {
        str(corpus / "c_copy.mid"): str(corpus / "a.mid"),
        str(corpus / "d_finer_grid.mid"): str(corpus / "a.mid"),
    }
    assert sum(s["pieces"] for s in ds.manifest["splits"].values()) == 3
    assert "3 files read (0 repaired), 0 skipped, 2 duplicates" in summary(ds)


def test_content_digest_ignores_track_layout_and_sees_content():
    def build(parts, pitch=60):
        s = symusic.Score(96)
        for notes in parts:
            t = symusic.Track("", 0, False)
            for start in notes:
                t.notes.append(symusic.Note(start, 96, pitch, 80))
            s.tracks.append(t)
        return s

    one = content_digest(build([[0, 96, 192]]))
    assert content_digest(build([[0, 192], [96]])) == one
    assert content_digest(build([[0, 96, 192]], pitch=62)) != one
    assert content_digest(build([[0, 96, 193]])) != one


def test_batched_digests_metadata_and_keys_equal_one_at_a_time(bach_source):
    scores = [symusic.Score(str(p)) for p in bach_source.files[:30]]
    scores.insert(3, symusic.Score(480))  # no notes
    scores.append(symusic.Score(96))
    paths = [f"p{k}" for k in range(len(scores))]
    digests, metas = [], []
    for first in range(0, len(scores), 8):
        part = scores[first : first + 8]
        table = note_table(part, [score_arrays(s) for s in part])
        digests += content_digests(table)
        metas += pieces_metadata(table, paths[first : first + 8])
    assert digests == [content_digest(s) for s in scores]
    assert metas == [piece_metadata(s, p) for s, p in zip(scores, paths, strict=True)]
    assert len(set(digests)) == len(scores) - 1  # the two empty scores hash alike
    hists = np.random.default_rng(0).random((20, 12))
    assert find_keys(hists) == [find_key(h) for h in hists]


def test_a_chunk_gives_what_its_files_give_one_by_one(bach_source, tmp_path):
    """Batched finishing (hash, metadata, encoding) against one file at a time, over
    chorales and, when present, the edge-case files (read, repaired and skipped alike)."""
    files = [str(p) for p in bach_source.files[:20]]
    if EDGE_CASES.is_dir():
        files += [str(p) for p in sorted(EDGE_CASES.rglob("*.mid"))[:60]]
    options = IngestOptions()
    jobs = list(enumerate(files))
    together = []
    for first in range(0, len(jobs), 16):
        together += process_chunk(jobs[first : first + 16], TK, options)
    for (index, path), result in zip(jobs, together, strict=True):
        alone = process_file(index, path, TK, options)
        assert (result.index, result.file) == (index, path)
        assert result.record() == alone.record(), path
        assert (result.digest, result.meta) == (alone.digest, alone.meta), path
        assert (result.ids is None) == (alone.ids is None), path
        if alone.ids is not None:
            assert np.array_equal(result.ids, alone.ids), path
    assert sum(r.status == "used" for r in together) >= 20


def test_strict_mode_skips_files_that_need_repair(bach_source, tmp_path):
    corpus = _copy(bach_source.files[:2], tmp_path / "c")
    score = symusic.Score(str(bach_source.files[2]))
    score.tracks[0].notes.append(symusic.Note(0, 0, 60, 80))  # a zero-length note
    score.dump_midi(str(corpus / "zero.mid"))
    lenient = prepare(folder_source(corpus), TK, workers=0, progress=False, root=tmp_path / "r")
    zero = {Path(r["file"]).name: r for r in _records(lenient)}["zero.mid"]
    assert zero["status"] == "used" and "zero_length_notes" in zero["repairs"]
    assert lenient.manifest["report"]["repairs"]["zero_length_notes"] == 1
    assert "repaired 1: zero_length_notes" in summary(lenient)
    strict = prepare(folder_source(corpus), TK, workers=0, progress=False, root=tmp_path / "r",
                     strict=True)  # fmt: skip
    assert strict.path != lenient.path  # strictness is part of the cache key
    zero = {Path(r["file"]).name: r for r in _records(strict)}["zero.mid"]
    assert zero["status"] == "skipped" and zero["stage"] == "repair"
    assert zero["reason"].startswith("needs repair: ") and "zero_length_notes" in zero["reason"]


def _all_parsers_read() -> set[str]:
    """Edge-case files that every established parser reads, with notes."""
    with (EDGE_CASES / "parsers.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {
        row["file"]
        for row in rows
        if all(row[p].startswith("OK ") and int(row[p].split()[1]) > 0 for p in PARSERS)
    }


def test_edge_case_corpus_goes_through_prepare(tmp_path):
    if not (EDGE_CASES / "parsers.tsv").is_file():
        pytest.skip(f"edge-case MIDI files not found at {EDGE_CASES}")
    source = folder_source(EDGE_CASES)
    ds = prepare(source, TK, workers=1, progress=False, root=tmp_path, timeout=20.0)
    records = {Path(r["file"]).relative_to(EDGE_CASES).as_posix(): r for r in _records(ds)}
    assert len(records) == len(source.files) == 134
    for name, record in records.items():
        if record["status"] != "used":
            assert record["stage"] and record["reason"], name
            assert "\n" not in record["reason"]
        assert "worker crashed" not in (record["reason"] or ""), name
        assert "timed out" not in (record["reason"] or ""), name
    read_by_all = _all_parsers_read()
    assert len(read_by_all) > 80
    skipped = sorted(n for n in read_by_all if records[n]["status"] == "skipped")
    assert skipped == [], [(n, records[n]["reason"]) for n in skipped]
    # Files a note-on-only or clipping-aware reader rescues are read here too.
    for name in ("test_single_message.mid", "test_invalid_data_byte_no_clipping.mid"):
        (record,) = [r for n, r in records.items() if n.endswith("/" + name)]
        assert record["status"] == "used" and "closed_open_notes" in record["repairs"]
    assert ds.manifest["report"]["files"] == 134
    pieces = sum(s["pieces"] for s in ds.manifest["splits"].values())
    assert pieces == ds.manifest["report"]["used"]
