"""Control tokens: written into training pieces, left out at random, forced when asked, and
every control value checked by name."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from aurl.data.controls import with_controls
from aurl.generate.control_names import ControlRequest, parse_chords, parse_key, resolve_controls
from aurl.generate.controls import ControlPlan, plan_prompt
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.midi import read_midi
from aurl.tokens import BOS, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.controls import (
    CONTROL_TYPES,
    bar_values,
    drop_controls,
    style_index,
    transpose_controls,
)
from aurl.tokens.mask import GrammarState
from aurl.tokens.tracks import declared_tracks
from factories import debug_model

TK = Tokenizer(TokenizerConfig(tracks=16, controls=True))
V = TK.vocab
T = TokenType
BAR_TYPES = (T.DENSITY, T.POLYPHONY, T.REGISTER, T.CHORD)


def test_controls_keep_every_earlier_id():
    tracks = Tokenizer(TokenizerConfig(tracks=16)).vocab
    for kind in TokenType:
        if kind < T.STYLE:  # every type before the controls keeps its ids
            assert V.offsets[kind] == tracks.offsets[kind], kind
    assert V.size == tracks.size + 9 + 24 + 8 + 6 + 8 + 120
    assert V.name(V.token(T.KEY, 14)) == "Key_d_minor"
    assert V.name(V.token(T.CHORD, 12 + 2)) == "Chord_Dmin"
    assert style_index("palestrina", V) == 1 and style_index("/my/folder", V) == 8


def test_training_pieces_hold_controls_that_any_subset_can_leave(bach_source):
    rng = np.random.default_rng(0)
    for path in bach_source.files[::25]:
        ids = TK.encode(read_midi(path))
        full = with_controls(ids, V)
        assert TK.grammar.validate(full) is None, path.name
        n_bars = int((V.types[ids] == T.BAR).sum())
        types = V.types[full]
        assert (types == T.KEY).sum() == 1 and V.types[full[1]] == T.KEY
        for kind in BAR_TYPES:  # one per bar that has notes
            assert 0.8 * n_bars <= (types == kind).sum() <= n_bars, (path.name, kind)
        assert np.array_equal(drop_controls(full, V, CONTROL_TYPES), ids)
        for _ in range(4):
            some = [k for k in CONTROL_TYPES if rng.random() < 0.5]
            assert TK.grammar.validate(drop_controls(full, V, some)) is None


def _score(bars: list[list[tuple[int, int, int]]]) -> symusic.Score:
    """A 4/4 score from bars of (onset in quarters * 12, duration, pitch)."""
    score = symusic.Score(12)
    track = symusic.Track("p", 0, False)
    for b, notes in enumerate(bars):
        for t, d, p in notes:
            track.notes.append(symusic.Note(b * 48 + t, d, p, 80))
    score.tracks.append(track)
    return score


def test_bar_values_bin_what_each_bar_holds():
    chord = [(t, 12, p) for t in (0, 12, 24, 36) for p in (48, 52, 55, 60)]  # 4 x 4 notes
    run_ = [(t, 3, 72 + t % 5) for t in range(0, 48, 3)]  # 16 sixteenths, one at a time
    ids = TK.encode(_score([chord, [], run_]))
    values = bar_values(ids, V)
    assert values[T.DENSITY].tolist() == [6, -1, 6]  # 4 notes per quarter in both
    assert values[T.POLYPHONY].tolist() == [3, -1, 0]  # four together, one alone
    assert values[T.REGISTER].tolist() == [1, -1, 6]  # mean 53.75, mean 74


def test_transposed_controls_follow_the_notes(bach_source):
    from aurl.data.augment import transpose

    ids = with_controls(TK.encode(read_midi(bach_source.files[3])), V)
    up = transpose_controls(transpose(ids, V, 5), V, 5)
    key = V.values[ids[V.types[ids] == T.KEY]][0]
    assert V.values[up[V.types[up] == T.KEY]][0] == (key % 12 + 5) % 12 + 12 * (key >= 12)
    chords = V.values[ids[V.types[ids] == T.CHORD]]
    moved = V.values[up[V.types[up] == T.CHORD]]
    assert np.array_equal(moved % 12, (chords + 5) % 12) and np.array_equal(
        moved // 12, chords // 12
    )
    fresh = bar_values(up, V)[T.REGISTER]
    assert np.array_equal(V.values[up[V.types[up] == T.REGISTER]], fresh[fresh >= 0])


def test_mask_matches_validator_with_controls(bach_source):
    ids = with_controls(TK.encode(read_midi(bach_source.files[0])), V).tolist()
    for n in list(range(0, 30)) + [60, 91]:
        state = GrammarState(V, 1)
        if n:
            state.feed(torch.tensor([ids[:n]]))
        legal = np.array([TK.grammar.validate(ids[:n] + [t]) is None for t in range(V.size)])
        assert np.array_equal(state.mask()[0].numpy(), legal), n


def _plan() -> ControlPlan:
    return ControlPlan(style=0, key=parse_key("D minor"), tracks=((40, -1), (42, -1)),
                       tempo=7, time_signature=V.signature_index[(3, 4)],
                       bars={T.DENSITY: (2, 5), T.CHORD: parse_chords("i iv V", 14)})  # fmt: skip


def test_sampling_writes_the_asked_controls_and_holds_the_facts():
    m = debug_model(vocab_size=V.size, max_seq_len=256)
    plan = _plan()
    prompt = torch.as_tensor(plan_prompt(plan, V))
    engine = Engine(m, V, SamplingConfig(temperature=1.5), torch.Generator().manual_seed(1))
    engine.add([prompt, torch.tensor([BOS])], 7, 500, [plan, None])
    run(engine)
    ids = engine.row(0).numpy()
    assert TK.grammar.validate(ids) is None
    types, values = V.types[ids], V.values[ids]
    bars = np.cumsum(types == T.BAR) - 1
    n = bars.max() + 1
    assert n >= 2
    for b in range(n):
        in_bar = bars == b
        assert values[in_bar & (types == T.DENSITY)].tolist() == [(2, 5)[b % 2]]
        assert values[in_bar & (types == T.CHORD)].tolist() == [list(plan.bars[T.CHORD])[b % 3]]
        assert not (in_bar & np.isin(types, [T.POLYPHONY, T.REGISTER])).any()
    assert set(values[types == T.TIMESIG].tolist()) == {plan.time_signature}
    assert values[types == T.TEMPO].tolist() == [7]
    assert (types == T.KEY).sum() == 1 and (types == T.STYLE).sum() == 1
    track_values = values[(types == T.TRACK) & (bars >= 0)]
    assert set(track_values.tolist()) <= {0, 1}
    free = engine.row(1).numpy()  # the row without a plan: nothing forced or forbidden
    assert len(free) > 1 and TK.grammar.validate(free) is None


@pytest.mark.parametrize(("request_", "message"), [
    (ControlRequest(key="H major"), "key 'H major'"),
    (ControlRequest(density="9"), "density '9': give bins from 0 to 7"),
    (ControlRequest(density="1,x"), "density 'x'"),
    (ControlRequest(style="jazz"), "choose from bach, palestrina"),
    (ControlRequest(chords="i Q7"), "chord 'Q7'"),
    (ControlRequest(instruments="kazoo"), "instrument 'kazoo'"),
    (ControlRequest(tempo=500), "tempo 500: give beats per minute from 30 to 240"),
    (ControlRequest(time_signature="5/3"), "choose from 2/4, 3/4"),
    (ControlRequest(voices=2, instruments="violin"), "not both"),
])  # fmt: skip
def test_bad_control_values_say_what_is_allowed(request_, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as err:
        resolve_controls(request_, V)
    assert "\n" not in str(err.value)


def test_control_names():
    assert [parse_key(k) for k in ("C", "a", "Eb major", "f# minor", "D minor")] == [
        0,
        21,
        3,
        18,
        14,
    ]
    plan = resolve_controls(ControlRequest(instruments="string quartet", style="any"), V)
    assert plan.tracks == ((40, -1), (40, -1), (41, -1), (42, -1)) and plan.style == -1
    assert resolve_controls(ControlRequest(), V).style == 0  # chorales by default
    plan = resolve_controls(ControlRequest(instruments="violin, cello, strings, 73"), V)
    assert [p for p, _ in plan.tracks] == [40, 42, 40, 73]
    assert len(resolve_controls(ControlRequest(voices=4), V).tracks) == 4
    plain = Tokenizer().vocab
    with pytest.raises(ValueError, match="trained without controls, so it cannot take key"):
        resolve_controls(ControlRequest(key="C"), plain)
    assert resolve_controls(ControlRequest(tempo=80), plain).tempo >= 0  # held for any model


@pytest.fixture(scope="module")
def control_run(feature_run):
    return feature_run


def test_training_windows_hold_the_style_and_leave_controls_out(control_run, small_corpus):
    from aurl.data.prepare import prepare
    from aurl.data.shards import Shard
    from aurl.data.sources import folder_source
    from aurl.data.windows import WindowDataset

    shard = Shard(
        prepare(folder_source(small_corpus), TK, workers=1, progress=False).split("train")
    )
    kept = {k: 0 for k in CONTROL_TYPES}
    windows = WindowDataset(shard, V, 128, seed=1, transpose=3, style=0, control_dropout=0.5)
    n = 200
    for i in range(n):
        ids = windows.window(i)
        assert ids[0] == BOS and len(ids) <= 129
        assert len(windows[i][0]) == 128
        types = V.types[ids]
        for kind in CONTROL_TYPES:
            kept[kind] += bool((types == kind).any())
        if (types == T.STYLE).any():
            assert V.types[ids[1]] == T.STYLE and V.values[ids[1]] == 0
    for kind, count in kept.items():
        assert 0.35 * n < count < 0.65 * n, (kind, count)
    none = WindowDataset(shard, V, 128, seed=1, style=0, control_dropout=0.0)
    assert all((V.types[none.window(i)] == T.KEY).any() for i in range(20))


def test_a_model_with_controls_generates_under_them(control_run, tmp_path, capsys):
    from aurl.api import load
    from aurl.cli import main

    gen = load(control_run, device="cpu")
    request = ControlRequest(style="bach", key="D minor", instruments="string quartet",
                             tempo=80, time_signature="3/4", density="3", chords="i iv V i")  # fmt: skip
    result = gen.generate(bars=4, num=2, seed=0, controls=request)
    for piece in result.pieces:
        ids = piece.ids
        assert TK.grammar.validate(ids) is None
        assert declared_tracks(ids, V) == ([40, 40, 41, 42], [-1] * 4)
        names = {t.name: t.program for t in piece.score.tracks}
        assert names and set(names.items()) <= {("Violin 1", 40), ("Violin 2", 40),
                                                ("Viola", 41), ("Cello", 42)}  # fmt: skip
        assert [(s.numerator, s.denominator) for s in piece.score.time_signatures] == [(3, 4)]
        assert [round(t.qpm) for t in piece.score.tempos] == [80]
        chords = V.values[ids[V.types[ids] == T.CHORD]].tolist()
        assert chords == [list(parse_chords("i iv V i", 14))[b % 4] for b in range(len(chords))]
        assert len(chords) == piece.bars
    out = tmp_path / "out"
    args = ["generate", "--model", str(control_run), "--bars", "2", "--seed", "3", "--out",
            str(out), "--voices", "4", "--key", "G major", "--register", "3,4"]  # fmt: skip
    assert main(args) == 0
    written = read_midi(next(out.glob("*.mid")))
    assert written.tracks and {t.name for t in written.tracks} <= {"Soprano", "Alto", "Tenor",
                                                                   "Bass"}  # fmt: skip
    capsys.readouterr()
    assert main(["generate", "--model", str(control_run), "--density", "12"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "density '12': give bins from 0 to 7" in err[0]
