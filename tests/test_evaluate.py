"""Evaluation metrics on built pieces with known answers, and fast paths against plain twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import symusic

from aurl.evaluate import features as F
from aurl.evaluate.compare import compare_feature, kde_on_grid, pairwise_distances, summarize
from aurl.evaluate.memorization import diversity, longest_runs, memorization
from aurl.evaluate.ngram import fit_kneser_ney, nll_per_token, token_log_probs
from aurl.evaluate.notes import Notes, crop_bars, ids_to_notes
from aurl.tokens import Tokenizer, TokenType
from aurl.tokens.encode import score_to_notes

SPQ = 12
BAR = 4 * SPQ
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def notes(time, duration, pitch, program=0, bars=None) -> Notes:
    """A piece from note lists (4/4 bars of 48 steps covering it unless ``bars`` is given)."""
    time = np.asarray(time, np.int64)
    duration = np.broadcast_to(np.asarray(duration, np.int64), time.shape).copy()
    pitch = np.asarray(pitch, np.int64)
    program = np.broadcast_to(np.asarray(program, np.int64), time.shape).copy()
    order = np.lexsort((pitch, program, time))
    end = int((time + duration).max()) if len(time) else 0
    bars = bars if bars is not None else max(1, -(-end // BAR))
    return Notes(
        time[order],
        duration[order],
        pitch[order],
        np.full(len(time), 80, np.int64),
        program[order],
        np.arange(bars, dtype=np.int64) * BAR,
        SPQ,
    )


def scale() -> Notes:
    """C major scale, C4 to C5, in quarter notes (two bars)."""
    return notes(np.arange(8) * SPQ, SPQ, C_MAJOR)


def test_c_major_scale():
    n = scale()
    assert F.scale_consistency(n) == 1.0
    assert F.n_pitch_classes_used(n) == 7
    assert F.n_pitches_used(n) == 8
    assert F.pitch_range(n) == 12
    assert F.pitch_in_scale_rate(n) == 1.0
    assert F.pitch_in_scale_rate(n, key=6) == pytest.approx(2 / 8)  # F# major holds F and B
    assert F.polyphony(n) == 1.0
    assert F.polyphony_rate(n) == 0.0
    assert F.pitch_class_entropy(n) == pytest.approx(2.75)  # C twice, six others once
    assert F.pitch_entropy(n) == pytest.approx(3.0)  # eight pitches once each
    assert F.empty_beat_rate(n) == 0.0
    assert F.groove_consistency(n) == 1.0
    assert F.inter_onset_interval(n) == 1.0
    assert F.pitch_interval(n) == pytest.approx(12 / 7)
    assert F.note_length_histogram(n)[2] == 1.0  # every note a quarter
    assert math.isnan(F.drum_pattern_consistency(n))


def test_estimated_key_of_a_minor_melody():
    # A natural minor, weighted on A, C and E: the key estimate is A minor (index 12 + 9).
    n = notes(
        np.arange(9) * SPQ, [24, 6, 6, 12, 24, 6, 6, 12, 24], [69, 71, 72, 74, 76, 77, 79, 72, 69]
    )
    assert F.estimate_key(n) == 12 + 9


@pytest.mark.parametrize("chord, expected", [([60, 64, 67], 3), ([60, 64, 67, 72], 4)])
def test_chord_held_for_a_bar(chord, expected):
    n = notes([0] * len(chord), BAR, chord)
    assert F.polyphony(n) == expected
    assert F.polyphony_rate(n) == 1.0  # more than two pitches at every step
    assert F.n_pitches_used(n) == expected
    assert F.empty_beat_rate(n) == 0.0


def test_two_voices_are_not_polyphony_rate():
    n = notes([0, 0], BAR, [60, 64])
    assert F.polyphony(n) == 2.0
    assert F.polyphony_rate(n) == 0.0  # MusPy counts steps with more than 2 pitches


def test_empty_beats():
    # Quarter notes on beats 1, 2 and 4: beat 3 is silent.
    n = notes([0, SPQ, 3 * SPQ], SPQ, [60, 62, 64])
    assert F.empty_beat_rate(n) == pytest.approx(1 / 4)
    # A note ending exactly on a beat line does not sound in the next beat.
    assert F.empty_beat_rate(notes([0], SPQ, [60])) == 0.0


def test_groove_consistency():
    same = notes([0, 12, 48, 60], 6, [60, 62, 60, 62])
    assert F.groove_consistency(same) == 1.0
    # Bar 1 has onsets at 0 and 12, bar 2 at 0 and 24: two of 48 positions differ.
    moved = notes([0, 12, 48, 72], 6, [60, 62, 60, 62])
    assert F.groove_consistency(moved) == pytest.approx(1 - 2 / 48)
    assert math.isnan(F.groove_consistency(notes([0], 6, [60])))


def test_drum_pattern_consistency():
    eighths = notes(np.arange(8) * 6, 3, [36] * 8, program=128)
    assert F.drum_pattern_consistency(eighths) == 1.0
    triplets = notes(np.arange(6) * 4, 2, [42] * 6, program=128)
    assert F.drum_pattern_consistency(triplets) == 1.0
    off = notes([1, 13], 1, [42, 42], program=128)
    assert F.drum_pattern_consistency(off) == 0.0
    # Drums never count as pitches.
    assert F.n_pitches_used(eighths) == 0 and F.pitch_range(eighths) == 0


def test_transition_matrices():
    # C -> D -> E, legato in one voice, plus a detached G (no transition into it).
    n = notes([0, 12, 24, 48], 12, [60, 62, 64, 67])
    m = F.pitch_class_transition(n)
    assert m[0, 2] == pytest.approx(0.5) and m[2, 4] == pytest.approx(0.5) and m.sum() == 1
    lengths = F.note_length_transition(notes([0, 12, 36], [12, 24, 6], [60, 62, 64]))
    assert lengths[2, 1] == pytest.approx(0.5) and lengths[1, 3] == pytest.approx(0.5)
    hist = F.pitch_class_histogram(notes([0, 12], [36, 12], [60, 62]))
    assert hist[0] == pytest.approx(0.75) and hist[2] == pytest.approx(0.25)


def test_empty_piece_gives_nan_not_errors():
    empty = notes([], 1, [], bars=2)
    values = F.piece_features(empty)
    assert math.isnan(values["polyphony"]) and math.isnan(values["scale_consistency"])
    assert values["pitch_range"] == 0 and values["note_count"] == 0


def test_ids_to_notes_matches_decode(small_corpus):
    from aurl.midi import read_midi

    tokenizer = Tokenizer()
    for path in sorted(small_corpus.glob("*.mid"))[:8]:
        ids = tokenizer.encode(read_midi(path))
        fast = ids_to_notes(ids, tokenizer.vocab)
        slow = score_to_notes(tokenizer.decode(ids), tokenizer.config.steps_per_quarter)
        for key in ("time", "duration", "pitch", "velocity", "program"):
            np.testing.assert_array_equal(getattr(fast, key), slow[key])
        assert fast.num_bars == int((tokenizer.vocab.types[ids] == TokenType.BAR).sum())


def test_ids_to_notes_of_a_built_score_and_crop():
    score = symusic.Score(SPQ)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    track = symusic.Track("piano", 0, False)
    for i, p in enumerate([60, 62, 64, 65, 67, 69]):
        track.notes.append(symusic.Note(i * SPQ, SPQ, p, 90))
    score.tracks.append(track)
    tokenizer = Tokenizer()
    n = ids_to_notes(tokenizer.encode(score), tokenizer.vocab)
    assert n.pitch.tolist() == [60, 62, 64, 65, 67, 69]
    assert n.bar_starts.tolist() == [0, 36]  # 3/4 bars of 36 steps
    cropped = crop_bars(n, 1)
    assert cropped.pitch.tolist() == [60, 62, 64] and cropped.num_bars == 1


def test_identical_sets_overlap_and_disjoint_sets_do_not():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 60)
    same = compare_feature(a, a.copy())
    assert same["oa"] > 0.9 and same["kl"] < 0.05
    far = compare_feature(rng.normal(50, 1, 60), a)
    assert far["oa"] < 0.05 and far["kl"] > 1
    # Histogram features compare by Euclidean distance between whole vectors.
    hists = rng.dirichlet(np.ones(12), 40)
    assert compare_feature(hists, hists.copy())["oa"] > 0.9
    low = rng.dirichlet(np.r_[np.full(3, 20.0), np.full(9, 0.5)], 40)
    high = np.roll(rng.dirichlet(np.r_[np.full(3, 20.0), np.full(9, 0.5)], 40), 6, axis=1)
    assert compare_feature(high, low)["oa"] < 0.1


def test_compare_leaves_out_undefined_pieces_and_constant_sets():
    out = compare_feature(np.array([1.0, np.nan, 1.0]), np.array([1.0, 1.0, 1.0]))
    assert out["pieces_generated"] == 2 and out["oa"] == 1.0
    assert compare_feature(np.array([np.nan, np.nan]), np.ones(3))["oa"] is None
    assert summarize(np.array([1.0, 3.0, np.nan])) == {"pieces": 2, "mean": 2.0, "std": 1.0}


def test_kde_matches_direct_evaluation():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 1.0, 300)
    grid = np.linspace(-3, 14, 1024)
    h = 0.4
    direct = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / h) ** 2).sum(1)
    direct /= len(x) * h * math.sqrt(2 * math.pi)
    assert np.abs(kde_on_grid(x, grid, h) - direct).max() < 0.01 * direct.max()


def test_pairwise_distances():
    a, b = np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0.0]])
    np.testing.assert_allclose(pairwise_distances(a, b), [[0.0], [5.0]])


def test_kneser_ney_is_a_distribution():
    rng = np.random.default_rng(0)
    vocab = 12
    pieces = [np.concatenate([[1], rng.integers(3, vocab, 50)]) for _ in range(20)]
    model = fit_kneser_ney(pieces, vocab, order=3)
    for context in ([1, 5, 7], [1], [1, 11, 11, 11]):
        probs = [
            np.exp(token_log_probs(model, [np.array(context + [w])])[-1]) for w in range(vocab)
        ]
        assert sum(probs) == pytest.approx(1.0)
        assert min(probs) > 0


def test_kneser_ney_learns_a_deterministic_sequence():
    pieces = [np.array([1] + [3, 4, 5, 6] * 20 + [2])] * 5
    model = fit_kneser_ney(pieces, 8, order=4)
    nll, count = nll_per_token(model, pieces[:1])
    assert count == len(pieces[0]) - 1
    assert nll < 0.2 < math.log(8)


def test_ngram_beats_uniform_on_chorales(small_corpus):
    from aurl.data.prepare import prepare
    from aurl.data.shards import Shard
    from aurl.data.sources import folder_source

    tokenizer = Tokenizer()
    data = prepare(folder_source(small_corpus), tokenizer, workers=1, progress=False)
    train, test = Shard(data.split("train")), Shard(data.split("test"))
    model = fit_kneser_ney(
        [train.piece(i) for i in range(train.num_pieces)], tokenizer.vocab_size, order=5
    )
    nll, count = nll_per_token(model, [test.piece(i) for i in range(test.num_pieces)])
    assert count == test.num_tokens - test.num_pieces
    assert nll < 0.5 * math.log(tokenizer.vocab_size)


def _naive_longest(query: np.ndarray, corpus: list[np.ndarray]) -> int:
    best = 0
    for c in corpus:
        for i in range(len(query)):
            for j in range(len(c)):
                k = 0
                while i + k < len(query) and j + k < len(c) and query[i + k] == c[j + k]:
                    k += 1
                best = max(best, k)
    return best


def test_longest_runs_against_brute_force():
    rng = np.random.default_rng(3)
    corpus = [rng.integers(0, 3, rng.integers(0, 40)).astype(np.uint64) for _ in range(6)]
    queries = [rng.integers(0, 3, rng.integers(0, 30)).astype(np.uint64) for _ in range(30)]
    queries.append(np.concatenate([corpus[0][:25], [np.uint64(7)]]))  # a planted copy
    fast = longest_runs(queries, corpus)
    assert fast.tolist() == [_naive_longest(q, corpus) for q in queries]


def _chorale_like(seed: int, bars: int) -> Notes:
    """Four random voices in quarter and eighth notes."""
    rng = np.random.default_rng(seed)
    time, dur, pitch = [], [], []
    for voice, low in enumerate((48, 55, 60, 67)):
        t = 0
        while t < bars * BAR:
            d = int(rng.choice([6, 12, 24]))
            time.append(t), dur.append(d), pitch.append(low + int(rng.integers(0, 10)) + voice)
            t += d
    return notes(time, dur, pitch, bars=bars)


def _shift(n: Notes, first_bar: int, bars: int, semitones: int) -> Notes:
    start, stop = n.bar_starts[first_bar], n.bar_starts[first_bar] + bars * BAR
    keep = (n.time >= start) & (n.time < stop)
    return notes(n.time[keep] - start, n.duration[keep], n.pitch[keep] + semitones, bars=bars)


def test_memorization_finds_a_planted_passage():
    training = [_chorale_like(s, 12) for s in range(10)]
    fresh = _chorale_like(100, 8)
    # Bars 3-8 of training piece 4, transposed up a minor third, then two fresh bars.
    copied = _shift(training[4], 3, 6, 3)
    tail = _shift(fresh, 0, 2, 0)
    planted = notes(
        np.concatenate([copied.time, tail.time + 6 * BAR]),
        np.concatenate([copied.duration, tail.duration]),
        np.concatenate([copied.pitch, tail.pitch]),
        bars=8,
    )
    result = memorization([planted, fresh], training, window_bars=4, threshold=0.5)
    assert result["longest_bars"] == [6, 0]
    assert result["longest_notes"][0] >= len(copied)
    assert result["longest_notes"][1] < 10
    assert result["window_share"][0] == pytest.approx(3 / 5)  # windows 1-3 of 5 are copied
    assert result["window_share"][1] == 0.0
    assert result["flagged"] == [0]


def test_diversity_counts_identical_pieces():
    pieces = [_chorale_like(s, 4) for s in range(4)]
    distinct = diversity(pieces)
    assert distinct["identical_pairs"] == 0 and distinct["bar_jaccard_distance_mean"] == 1.0
    repeated = diversity(pieces + [_shift(pieces[0], 0, 4, 2)])  # a transposed duplicate
    assert repeated["pairs_sharing_window"] == pytest.approx(1 / 10)
    assert diversity(pieces + pieces[:1])["identical_pairs"] == 1


def _copy_by_split(bach_source, folder, wanted: dict[str, int]):
    """Copy chorales beyond the first 40 into ``folder``: ``wanted[split]`` of each split."""
    from aurl.data.split import split_of

    folder.mkdir()
    for path in bach_source.files[40:]:
        split = split_of(path.stem)
        if wanted.get(split, 0) > 0:
            (folder / path.name).write_bytes(path.read_bytes())
            wanted[split] -= 1
    assert not any(wanted.values()), wanted
    return folder


def test_evaluating_on_other_data_reports_the_model_test_nll(tiny_run, bach_source, tmp_path):
    import json

    from click.testing import CliRunner

    from aurl.data.shards import Shard
    from aurl.evaluate import likelihood
    from aurl.evaluate.command import evaluate
    from aurl.evaluate.datasets import source_dataset
    from aurl.models import load_model

    data = _copy_by_split(bach_source, tmp_path / "other", {"train": 4, "test": 2})
    out = tmp_path / "report"
    args = ["--model", str(tiny_run), "--data", str(data), "--num", "2", "--bars", "1",
            "--no-plots", "--quiet", "--device", "cpu", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(evaluate, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())

    folder = load_model(tiny_run / "model")
    test = Shard(source_dataset(str(data), folder.tokenizer).split("test"))
    nll, count = likelihood.test_nll(folder, test, "cpu")
    model = report["likelihood"]["model"]
    assert model["nll_per_token"] == pytest.approx(nll, abs=1e-6)
    assert model["tokens"] == count == test.num_tokens - test.num_pieces
    assert model["context"] == likelihood.context_length(folder)
    assert report["likelihood"]["test_pieces"] == report["sets"]["reference"]["pieces"] == 2
    assert report["model"]["evaluated_on"] == str(data)
    assert report["model"]["dataset_matches_training"] is False


def test_evaluating_on_unusable_data_says_which(tiny_run, bach_source, tmp_path):
    from click.testing import CliRunner

    from aurl.data.sources import SourceError
    from aurl.evaluate.command import evaluate

    no_test = _copy_by_split(bach_source, tmp_path / "no-test", {"train": 2})
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing"
    for data, error in ((no_test, ValueError), (empty, SourceError), (missing, SourceError)):
        args = ["--model", str(tiny_run), "--data", str(data), "--quiet", "--device", "cpu",
                "--out", str(tmp_path / "report")]  # fmt: skip
        result = CliRunner().invoke(evaluate, args)
        message = str(result.exception)
        assert isinstance(result.exception, error), (data, result.output)
        assert str(data) in message and "\n" not in message
    assert not (tmp_path / "report").exists()
