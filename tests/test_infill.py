"""Infilling: the layout round-trips and keeps the grammar, training windows mix in infilling
examples, and infill/harmonize change only the notes asked for."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from aurl.data.config import InfillConfig
from aurl.data.controls import with_controls
from aurl.data.infill_examples import make_example
from aurl.midi import read_midi, write_midi
from aurl.tokens import Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.grammar import bar_starts
from aurl.tokens.infill import infill_example, merge_fill, second_pass_notes
from aurl.tokens.mask import GrammarState

TK = Tokenizer(TokenizerConfig(tracks=16, controls=True, infill=True))
V = TK.vocab
T = TokenType


@pytest.mark.parametrize("repeat", [0, 1, 2])
def test_infill_examples_keep_the_grammar_and_merge_back(bach_source, repeat):
    tk = Tokenizer(TokenizerConfig(tracks=16, controls=True, infill=True, infill_context=repeat))
    plain = Tokenizer(TokenizerConfig(infill=True, infill_context=repeat))
    for path in bach_source.files[::40]:
        score = read_midi(path)
        ids = with_controls(tk.encode(score), tk.vocab)
        n = int((V.types[ids] == T.BAR).sum())
        for first, count, tracks in ((1, 3, None), (0, n, {0}), (n - 2, 2, {1, 2})):
            example = infill_example(ids, tk.vocab, first, count, tracks)
            assert tk.grammar.validate(example) is None, (path.name, first, count, tracks)
            assert (V.types[example] == T.FILL).sum() == count
            at = int(np.flatnonzero(V.types[example] == T.INFILL)[0])
            second = (V.types[example[at:]] == T.BAR).sum()
            assert second == min(repeat, first) + count  # the repeated bars, then the marked
            assert np.array_equal(merge_fill(example, tk.vocab), ids), path.name
        ids = plain.encode(score)
        example = infill_example(ids, plain.vocab, 2, 2)
        assert plain.grammar.validate(example) is None
        assert np.array_equal(merge_fill(example, plain.vocab), ids)


def test_the_second_pass_repeats_the_bar_before_the_gap_whole(bach_source):
    """With infill_context 1 the second pass opens with the bar before the gap, every note
    of it (all tracks, even when filling tracks); the notes it writes for the gap are the
    marked bars' only, and the prompt ends at the first marked bar."""
    from aurl.generate.infill import fill_prompt

    tk = Tokenizer(TokenizerConfig(tracks=16, infill=True, infill_context=1))
    vocab = tk.vocab
    ids = tk.encode(read_midi(bach_source.files[5]))
    starts = bar_starts(ids, vocab)
    same = Tokenizer(TokenizerConfig(tracks=16, infill=True)).vocab  # without the repeat
    original = second_pass_notes(infill_example(ids, same, 0, len(starts) - 1), same)  # all
    for first, count, tracks in ((3, 2, None), (3, 2, {1, 2})):
        example = infill_example(ids, vocab, first, count, tracks)
        at = int(np.flatnonzero(vocab.types[example] == T.INFILL)[0])
        bars = np.flatnonzero(vocab.types[example[at:]] == T.BAR) + at
        repeated = example[bars[0] : bars[1]]
        assert (vocab.types[repeated] == T.PITCH).sum() == sum(
            starts[first - 1] <= t < starts[first] for _, t, *_ in original)  # fmt: skip
        gap = [n for n in original if starts[first] <= n[1] < starts[first + count]
               and (tracks is None or n[0] in tracks)]  # fmt: skip
        assert sorted(second_pass_notes(example, vocab)) == sorted(gap)
        prompt, max_bars, lo = fill_prompt(ids, vocab, first, count, tracks)
        assert np.array_equal(prompt, example[: len(prompt)]) and lo == 0
        assert vocab.types[prompt[-1]] == T.TIMESIG and prompt[-2] == example[bars[1]]
        assert max_bars == len(starts) - 1 + 1 + count  # the piece, the repeated bar, the gap


def test_a_second_pass_cannot_mark_or_open_again(bach_source):
    ids = TK.encode(read_midi(bach_source.files[1]))
    ids = ids[: np.flatnonzero(V.types[ids] == T.BAR)[4]]  # four bars are enough
    example = infill_example(ids, V, 1, 2, None).tolist()
    at = example.index(V.offsets[T.INFILL])
    for n in (at - 1, at, at + 1, at + 2, at + 9, len(example) - 1):
        state = GrammarState(V, 1)
        state.feed(torch.tensor([example[:n]]))
        legal = np.array([TK.grammar.validate(example[:n] + [t]) is None for t in range(V.size)])
        assert np.array_equal(state.mask()[0].numpy(), legal), n
    violation = TK.grammar.validate(example[: at + 1] + [V.offsets[T.BAR], V.offsets[T.FILL]])
    assert violation is not None and "after Infill" in violation.reason


def test_long_pieces_are_cropped_around_the_gap_to_fit_the_context(bach_source):
    from aurl.generate.infill import fill_prompt

    ids = TK.encode(read_midi(bach_source.files[0]))
    whole, bars, lo = fill_prompt(ids, V, 6, 2)
    assert lo == 0 and bars == int((V.types[ids] == T.BAR).sum()) + 2
    prompt, bars, lo = fill_prompt(ids, V, 6, 2, limit=300)
    assert len(prompt) < 300 < len(whole) and 0 < lo <= 6
    assert (V.types[prompt] == T.FILL).sum() == 2 and V.types[prompt[-1]] in (T.BAR, T.TIMESIG)
    assert TK.grammar.validate(prompt) is None  # the first kept bar has its TimeSig


@pytest.mark.parametrize("limit", [300, 400, 500])
def test_a_cropped_gap_keeps_as_much_context_as_fits(bach_source, limit):
    """The crop measures the sequence it makes: the kept bars and a second pass as long as
    the gap's own notes fit in the context, and one bar more would not (a gap of dense bars
    once lost all its context to an estimate that counted its notes twice)."""
    from aurl.generate.infill import _crop, fill_prompt
    from aurl.tokens.infill import context_bars, split_bars

    ids = TK.encode(read_midi(bach_source.files[7]))
    head, bars, _ = split_bars(ids, V)
    first, count = 5, 3
    prompt, max_bars, lo = fill_prompt(ids, V, first, count, limit=limit)
    hi = lo + max_bars - context_bars(V, first - lo) - count
    size = lambda a, b: len(infill_example(_crop(head, bars, a, b, V), V, first - a, count))  # noqa: E731
    assert size(lo, hi) + 4 * count <= limit
    assert lo < first or hi > first + count  # some context left
    wider = [size(a, b) for a, b in ((lo - 1, hi), (lo, hi + 1)) if a >= 0 and b <= len(bars)]
    assert wider and min(wider) + 4 * count > limit  # and no bar more


def test_training_windows_mix_in_infilling_examples(bach_source):
    ids = TK.encode(read_midi(bach_source.files[2]))[:400]
    config = InfillConfig(bars=0.3, tracks=0.3, max_bars=3)
    kinds = {"plain": 0, "bars": 0, "tracks": 0}
    for i in range(300):
        example = make_example(ids, V, config, np.random.default_rng(i))
        if not (V.types[example] == T.INFILL).any():
            kinds["plain"] += 1
            continue
        second = second_pass_notes(example, V)
        marks = int((V.types[example] == T.FILL).sum())
        assert 1 <= marks <= int((V.types[ids] == T.BAR).sum()) - 1
        tracks = {t for t, *_ in second}
        kinds["tracks" if len(tracks) < 5 and marks > 3 or len(tracks) < 4 else "bars"] += 1
    assert 60 < kinds["plain"] < 150 and kinds["bars"] + kinds["tracks"] > 150


def test_a_span_with_no_room_for_its_neighbours_is_filled_bar_by_bar(bach_source):
    from aurl.generate.infill import _cramped, fill_prompt

    ids = TK.encode(read_midi(bach_source.files[7]))
    bars = int((V.types[ids] == T.BAR).sum())
    cramped = lambda n, limit: _cramped(V, 5, n, bars, *fill_prompt(ids, V, 5, n, limit=limit)[1:])  # noqa: E731
    assert fill_prompt(ids, V, 5, 4, limit=300)[2] == 5 and cramped(4, 300)  # no bar before
    assert not cramped(4, 600)  # two bars before them fit
    assert not cramped(4, 0) and not cramped(1, 300)


def _notes(track: symusic.Track) -> list[tuple[int, int, int, int]]:
    return sorted((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)


@pytest.fixture(scope="module")
def infill_run(feature_run):
    return feature_run


def test_infill_changes_only_the_asked_bars_and_tracks(infill_run, small_corpus):
    from aurl.api import load

    gen = load(infill_run, device="cpu")
    path = sorted(small_corpus.glob("*.mid"))[3]
    source = read_midi(path)
    lo, hi = 4 * 4 * source.tpq, 6 * 4 * source.tpq  # bars 5-6 in 4/4, in the file's ticks
    result = gen.infill(path, "5-6", num=2, seed=0)
    for piece in result.pieces:
        assert gen.tokenizer.grammar.validate(piece.ids) is None
        assert not (gen.tokenizer.vocab.types[piece.ids] == T.INFILL).any()  # the whole piece
        assert [t.name for t in piece.score.tracks] == [t.name for t in source.tracks]
        for old, new in zip(source.tracks, piece.score.tracks, strict=True):
            outside = [n for n in _notes(old) if not lo <= n[0] < hi]
            assert [n for n in _notes(new) if not lo <= n[0] < hi] == outside
        added = {n for t in piece.score.tracks for n in _notes(t)} - {
            n for t in source.tracks for n in _notes(t)}  # fmt: skip
        assert added and all(lo <= n[0] < hi for n in added)  # written where it was asked
    alto_tenor = gen.infill(path, "5-6", tracks="alto,tenor", seed=1).pieces[0].score
    for old, new in zip(source.tracks, alto_tenor.tracks, strict=True):
        if old.name in ("Alto", "Tenor"):
            assert [n for n in _notes(new) if not lo <= n[0] < hi] == [
                n for n in _notes(old) if not lo <= n[0] < hi]  # fmt: skip
        else:
            assert _notes(new) == _notes(old), old.name  # untouched, note for note
    with pytest.raises(ValueError, match="the piece has bars 1 to"):
        gen.infill(path, "5-900")
    with pytest.raises(ValueError, match="the piece's tracks are"):
        gen.infill(path, "5-6", tracks="viola")


def test_harmonize_keeps_the_melody_note_for_note(infill_run, small_corpus, tmp_path):
    from aurl.api import load
    from aurl.cli import main

    source = read_midi(sorted(small_corpus.glob("*.mid"))[5])
    soprano = next(t for t in source.tracks if t.name == "Soprano").copy()
    soprano.notes = [n for n in soprano.notes if n.time < 6 * 4 * source.tpq]  # six bars
    melody = symusic.Score(source.tpq)
    melody.tracks.append(soprano)
    melody.tempos = source.tempos
    melody.time_signatures = source.time_signatures
    path = write_midi(melody, tmp_path / "melody.mid")
    gen = load(infill_run, device="cpu")
    score = gen.harmonize(path, seed=0).pieces[0].score
    assert _notes(score.tracks[0]) == _notes(read_midi(path).tracks[0])
    assert [t.name for t in score.tracks][1:] == ["Alto", "Tenor", "Bass"][: len(score.tracks) - 1]
    out = tmp_path / "out"
    assert main(["harmonize", str(path), "--model", str(infill_run), "--seed", "2", "--out",
                 str(out)]) == 0  # fmt: skip
    assert len(list(out.glob("melody-harmony-2-*.mid"))) == 1
    assert main(["infill", str(path), "--model", str(infill_run), "--bars", "9-2"]) == 2


def test_fill_controls_go_on_the_filled_bars_only(bach_source):
    from aurl.generate.controls import ControlPlan
    from aurl.generate.infill import with_fill_controls

    ids = TK.encode(read_midi(bach_source.files[2]))
    bar_at = np.flatnonzero(V.types[ids] == T.BAR)
    chords = {T.CHORD: (3, 17), T.DENSITY: (4,)}
    out = with_fill_controls(ids, V, ControlPlan(style=0, key=14, bars=chords), 2, 3, False)
    assert TK.grammar.validate(out) is None
    assert list(out[1:2]) == [V.token(T.KEY, 14)] and T.STYLE not in V.types[out]
    bars = np.split(out, np.flatnonzero(V.types[out] == T.BAR))[1:]
    values = [[int(V.values[t]) for t in bar if V.types[t] == T.CHORD] for bar in bars]
    assert values[:6] == [[], [], [3], [17], [3], []] and len(bars) == len(bar_at)
    assert [int((V.types[b] == T.DENSITY).sum()) for b in bars[:6]] == [0, 0, 1, 1, 1, 0]
    styled = with_fill_controls(ids, V, ControlPlan(style=2), 0, 1, True)
    assert list(styled[1:2]) == [V.token(T.STYLE, 2)]
    with pytest.raises(ValueError, match="keeps the piece's instruments"):
        with_fill_controls(ids, V, ControlPlan(tempo=3), 0, 1, False)


def test_infill_and_harmonize_take_controls(infill_run, small_corpus, tmp_path):
    from aurl.api import load
    from aurl.cli import main
    from aurl.generate.control_names import ControlRequest

    gen = load(infill_run, device="cpu")
    path = sorted(small_corpus.glob("*.mid"))[3]
    piece = gen.infill(path, "2-3", seed=0, controls=ControlRequest(key="D minor",
                                                                    chords="i V")).pieces[0]  # fmt: skip
    types = gen.tokenizer.vocab.types[piece.ids]
    assert (types == T.KEY).sum() == 1 and (types == T.CHORD).sum() == 2
    out = tmp_path / "out"
    assert main(["infill", str(path), "--model", str(infill_run), "--bars", "2", "--chords",
                 "IV", "--out", str(out), "--seed", "1"]) == 0  # fmt: skip
    assert main(["infill", str(path), "--model", str(infill_run), "--bars", "2",
                 "--instruments", "violin"]) == 2  # not an option of infill  # fmt: skip
    assert main(["infill", str(path), "--model", str(infill_run), "--bars", "2", "--key",
                 "H major"]) == 2  # fmt: skip
