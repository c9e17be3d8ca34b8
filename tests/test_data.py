"""Data: sources, hash splits, prepared shards and their cache, windows and transposition."""

from __future__ import annotations

import numpy as np
import pytest

from aurl.data.prepare import cache_status, prepare
from aurl.data.shards import Shard
from aurl.data.sources import SourceError, folder_source
from aurl.data.split import split_of
from aurl.data.windows import WindowDataset, eval_windows, transpose, transpose_range
from aurl.tokens import BOS, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.vocab import DRUM_PROGRAM

TK = Tokenizer()
V = TK.vocab


def test_split_is_stable_and_roughly_90_5_5():
    names = [f"piece-{i}" for i in range(4000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]  # pure function of the name
    share = {s: splits.count(s) / len(names) for s in ("train", "val", "test")}
    assert (
        0.87 < share["train"] < 0.93 and 0.03 < share["val"] < 0.07 and 0.03 < share["test"] < 0.07
    )


def test_adding_files_moves_no_piece(small_corpus, tmp_path):
    before = folder_source(small_corpus)
    extra = tmp_path / "corpus"
    extra.mkdir()
    for p in before.files:
        (extra / p.name).write_bytes(p.read_bytes())
    (extra / "new.mid").write_bytes(before.files[0].read_bytes())
    after = folder_source(extra)
    assert before.identities() == [before.identity(p) for p in before.files]
    old = {before.identity(p): split_of(before.identity(p)) for p in before.files}
    new = {after.identity(p): split_of(after.identity(p)) for p in after.files}
    assert all(new[k] == v for k, v in old.items())


def test_missing_or_empty_sources(tmp_path):
    with pytest.raises(SourceError, match="no such folder"):
        folder_source(tmp_path / "nope")
    with pytest.raises(SourceError, match="no .mid"):
        folder_source(tmp_path)


def test_prepare_reports_bad_files_and_caches(small_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in sorted(small_corpus.iterdir())[:12]:
        (corpus / p.name).write_bytes(p.read_bytes())
    (corpus / "corrupt.mid").write_bytes(
        b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x00\x60MTrk\x00\x00\x10"
    )
    (corpus / "notmidi.mid").write_text("hello")
    root = tmp_path / "datasets"
    first = prepare(folder_source(corpus), TK, workers=2, progress=False, root=root)
    assert not first.cached
    skipped = {s["file"].rsplit("/", 1)[-1]: s["reason"] for s in first.manifest["skipped"]}
    assert set(skipped) == {"corrupt.mid", "notmidi.mid"}
    assert "not a MIDI file" in skipped["notmidi.mid"]
    splits = first.manifest["splits"]
    assert sum(splits[s]["pieces"] for s in splits) == 12
    # Every stored piece decodes back to the notes of its file.
    shard = Shard(first.split("train"))
    assert shard.num_pieces == splits["train"]["pieces"]
    assert shard.piece(0)[0] == BOS and TK.grammar.validate(shard.piece(0)) is None
    second = prepare(folder_source(corpus), TK, workers=2, progress=False, root=root)
    assert second.cached and second.path == first.path
    other = prepare(folder_source(corpus), Tokenizer(TokenizerConfig(velocity_bins=8)),
                    workers=1, progress=False, root=root)  # fmt: skip
    assert other.path != first.path  # a changed tokenizer config rebuilds
    assert not list(root.glob(".*tmp"))  # no half-written folders left


def test_transpose_moves_pitches_not_drums():
    ids = TK.encode(_score_with_drums())
    up = transpose(ids, V, 5)
    types = V.types[ids]
    pitch = types == TokenType.PITCH
    moved = (up - ids)[pitch]
    assert sorted(set(moved.tolist())) == [0, 5]  # drums (0) and pitched notes (5)
    assert np.array_equal(up[~pitch], ids[~pitch])
    assert transpose_range(ids, V, 12) == (-12, 12)
    assert transpose_range(ids, V, 50) == (-40, 127 - 100)  # lowest pitched note 40, highest 100
    with pytest.raises(ValueError, match="outside"):
        transpose(ids, V, 40)


def _score_with_drums():
    import symusic

    s = symusic.Score(12)
    for program, drum, pitch in ((0, False, 100), (0, True, 36), (33, False, 40)):
        t = symusic.Track("t", program, drum)
        t.notes.append(symusic.Note(0, 12, pitch, 80))
        t.notes.append(symusic.Note(24, 12, pitch, 80))
        s.tracks.append(t)
    return s


def test_windows_start_at_bars_and_are_deterministic(small_corpus, tmp_path):
    ds = prepare(folder_source(small_corpus), TK, workers=1, progress=False, root=tmp_path)
    shard = Shard(ds.split("train"))
    windows = WindowDataset(shard, V, seq_len=64, seed=1, transpose=6)
    bar_starts = set(shard.bars.tolist()) | set(shard.pieces[:-1].tolist())
    shifts = set()
    for i in range(100):
        x, y = windows[i]
        assert x.shape == y.shape == (64,)
        assert torch_equal(x[1:], y[:-1])
        start, end, shift = windows.locate(i)
        assert start in bar_starts and -6 <= shift <= 6
        stored = np.asarray(shard.tokens[start:end], np.int64)
        n = min(end - start, 64)
        assert np.array_equal(x.numpy()[:n], transpose(stored, V, shift)[:n])
        shifts.add(shift)
    assert len(shifts) > 5
    assert torch_equal(windows[7][0], WindowDataset(shard, V, 64, seed=1, transpose=6)[7][0])
    assert not torch_equal(windows[7][0], WindowDataset(shard, V, 64, seed=2, transpose=6)[7][0])
    covered = sum(len(w) - 1 for w in eval_windows(shard, 64))
    assert covered == shard.num_tokens - shard.num_pieces  # every token predicted once


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_drum_program_constant():
    assert V.name(V.token(TokenType.PROGRAM, DRUM_PROGRAM)) == "Program_Drums"


def test_cache_is_incremental(small_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = sorted(small_corpus.iterdir())
    for p in files[:10]:
        (corpus / p.name).write_bytes(p.read_bytes())
    root = tmp_path / "datasets"
    first = prepare(folder_source(corpus), TK, workers=1, progress=False, root=root)
    assert first.manifest["processed"] == 10
    (corpus / files[10].name).write_bytes(files[10].read_bytes())  # one new file
    second = prepare(folder_source(corpus), TK, workers=1, progress=False, root=root)
    assert second.path != first.path and second.manifest["processed"] == 1
    assert sum(s["pieces"] for s in second.manifest["splits"].values()) == 11
    # The same pieces as a fresh build: the cache changes nothing but the work done.
    fresh = prepare(folder_source(corpus), TK, workers=1, progress=False, root=tmp_path / "x" / "d")
    assert fresh.manifest["processed"] == 11
    for split in ("train", "val", "test"):
        a, b = Shard(second.split(split)), Shard(fresh.split(split))
        assert np.array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    # A changed setting processes everything again.
    other = prepare(folder_source(corpus), TK, workers=1, progress=False, root=root, strict=True)
    assert other.manifest["processed"] == 11
    status = cache_status(root)
    assert "datasets in" in status and status.count(" pieces, ") == 3
    assert "11 encoded files" in status and "older format" not in status
    (root / ".pieces" / "0123456789abcdef" / "ab").mkdir(parents=True)  # an earlier layout
    (root / ".pieces" / "0123456789abcdef" / "ab" / "x.piece").write_bytes(b"x" * 2048)
    assert "1 piece folders of an older format" in cache_status(root)


def test_preprocessing_and_metadata_in_prepare(small_corpus, tmp_path):
    import json

    from aurl.data.preprocess import PreprocessConfig

    root = tmp_path / "datasets"
    plain = prepare(folder_source(small_corpus), TK, workers=1, progress=False, root=root)
    thin = prepare(folder_source(small_corpus), TK, workers=1, progress=False, root=root,
                   preprocessing=PreprocessConfig(max_polyphony=2))  # fmt: skip
    assert thin.path != plain.path  # preprocessing is part of the key
    notes = lambda d: sum(s["notes"] for s in d.manifest["splits"].values())  # noqa: E731
    assert notes(thin) < 0.7 * notes(plain)  # four voices thinned to two
    lines = (plain.split("train") / "metadata.jsonl").read_text().splitlines()
    assert len(lines) == plain.manifest["splits"]["train"]["pieces"]
    first = json.loads(lines[0])
    assert first["identity"] == plain.manifest["splits"]["train"]["identities"][0]
    assert first["key"]["mode"] in ("major", "minor") and first["notes"] > 0
    assert {"tempo", "time_signatures", "programs", "notes_per_second", "seconds"} <= set(first)


def test_control_labels_key_the_cache_only_with_controls():
    from aurl.data.controls import LABELS_VERSION
    from aurl.data.prepare import prepare_settings
    from aurl.data.preprocess import PreprocessConfig

    plain = prepare_settings(Tokenizer(), PreprocessConfig(), False, False)
    controlled = prepare_settings(
        Tokenizer(TokenizerConfig(controls=True)), PreprocessConfig(), False, False
    )
    assert "labels" not in plain  # a change of the analysis leaves such caches alone
    assert controlled["labels"] == LABELS_VERSION
    repeating = prepare_settings(
        Tokenizer(TokenizerConfig(infill=True, infill_context=1)), PreprocessConfig(), False, False
    )
    infilling = prepare_settings(Tokenizer(TokenizerConfig(infill=True)), PreprocessConfig(),
                                 False, False)  # fmt: skip
    assert repeating == infilling  # the layout of infilling windows is made at training time
