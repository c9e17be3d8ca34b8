"""Steering: pitches are pulled into the bar's chord (or the key) and bars towards their
density, polyphony and register bins, drums are left alone, and rows of different strengths
share a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurl.generate.bar_notes import Bars
from aurl.generate.control_names import parse_chords, parse_key
from aurl.generate.controls import ControlPlan, plan_prompt
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.generate.steer import (
    CROSS,
    DISSONANCE,
    JOIN,
    LEAP,
    PARALLEL,
    RANGE,
    SILENT,
    Tables,
    crossing_bias,
    density_bias,
    dissonance_bias,
    join_bias,
    parallel_bias,
    polyphony_bias,
    register_bias,
    silence_bias,
    tonal_bias,
    voice_bias,
)
from aurl.tokens import BOS, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.controls import bar_values
from aurl.tokens.grammar import Grammar
from aurl.tokens.vocab import DRUM_PROGRAM
from factories import debug_model

TK = Tokenizer(TokenizerConfig(tracks=16, controls=True))
V = TK.vocab
T = TokenType
KEY = parse_key("G major")
CHORDS = parse_chords("I V", KEY)  # G major, D major
CHORD_PCS = ({7, 11, 2}, {2, 6, 9})
PIANO, DRUMS = (0, -1), (DRUM_PROGRAM, -1)


def _sample(plan: ControlPlan, steer: float, bars: int = 6, seed: int = 0) -> np.ndarray:
    m = debug_model(vocab_size=V.size, max_seq_len=512)
    engine = Engine(m, V, SamplingConfig(steer=steer), torch.Generator().manual_seed(seed))
    engine.add([torch.as_tensor(plan_prompt(plan, V))], bars, 500, [plan])
    run(engine)
    ids = engine.row(0).numpy()
    assert TK.grammar.validate(ids) is None
    return ids


def _notes(ids: np.ndarray) -> list[tuple[int, int, int]]:
    """(bar, track, pitch) of every note."""
    bar, _ = Grammar(V).timeline(ids)
    types, values = V.types[ids], V.values[ids]
    out, track = [], -1
    for i in range(len(ids)):
        if types[i] == T.TRACK and bar[i] >= 0:
            track = int(values[i])
        elif types[i] == T.PITCH:
            out.append((int(bar[i]), track, int(values[i])))
    return out


def test_steered_pitches_keep_to_each_bars_chord_and_drums_are_left_alone():
    plan = ControlPlan(key=KEY, tracks=(PIANO, DRUMS), bars={T.CHORD: CHORDS})
    for steer, inside in ((0.0, False), (30.0, True)):
        notes = [n for seed in range(4) for n in _notes(_sample(plan, steer, 8, seed))]
        piano = [(b, p) for b, t, p in notes if t == 0]
        drums = [p for _, t, p in notes if t == 1]
        assert len(piano) > 15 and len(drums) > 15
        in_chord = [p % 12 in CHORD_PCS[b % 2] for b, p in piano]
        assert all(in_chord) == inside, steer
        assert not all(p % 12 in CHORD_PCS[0] | CHORD_PCS[1] for p in drums)


def test_without_a_chord_steering_keeps_to_the_key():
    scale = {7, 9, 11, 0, 2, 4, 6}
    notes = [n for seed in range(5) for n in _notes(_sample(ControlPlan(key=KEY), 30.0, 8, seed))]
    assert len(notes) > 15 and all(p % 12 in scale for _, _, p in notes)


def _bins(kind: TokenType, value: int, steer: float) -> np.ndarray:
    """The bins of ``kind`` that the bars with notes of five pieces asking ``value`` hold."""
    plan = ControlPlan(tracks=(PIANO,), bars={kind: (value,)})
    got = np.concatenate([bar_values(_sample(plan, steer, seed=s), V)[kind] for s in range(5)])
    return got[got >= 0]


@pytest.mark.parametrize("kind, low, high", [(T.DENSITY, 1, 6), (T.POLYPHONY, 0, 3)])
def test_steering_brings_each_bar_near_its_bin(kind, low, high):
    for value in (low, high):
        assert np.mean(np.abs(_bins(kind, value, 4.0) - value) <= 1) >= 0.9
        assert np.mean(np.abs(_bins(kind, value, 0.0) - value) <= 1) <= 0.6


def test_register_steering_moves_the_bars_pitch():
    # the untrained model spreads its pitches over all 128, so the tilt (an octave at most)
    # moves the bars' mean pitch without bringing every bar into its bin
    low, high = _bins(T.REGISTER, 1, 4.0).mean(), _bins(T.REGISTER, 6, 4.0).mean()
    assert high - low >= 1.5
    assert abs(_bins(T.REGISTER, 6, 0.0).mean() - _bins(T.REGISTER, 1, 0.0).mean()) < 0.75


def test_the_density_bias_pulls_the_next_onset_to_where_the_bar_is_on_schedule():
    tables = Tables(V)
    pos, bar = int(V.offsets[T.POSITION]), int(V.offsets[T.BAR])
    pitch, track = int(V.offsets[T.PITCH]), int(V.offsets[T.TRACK])
    sig = torch.tensor([0, 0])  # four quarters
    # bin 6 wants 20 notes in 4/4; at the second quarter, 0 and 15 notes so far
    at = torch.tensor([tables.quarter, tables.quarter])
    bias = density_bias(tables, torch.tensor([6, 6]), torch.tensor([0, 15]), at, sig,
                        torch.tensor([1.0, 1.0]))  # fmt: skip
    soon, late = pos + tables.quarter + 1, pos + 3 * tables.quarter
    assert bias[0, pitch] == bias[0, track] == 0  # short of notes: another note costs nothing
    assert bias[0, bar] < bias[0, late] < bias[0, soon] < 0  # moving on costs, the later more
    assert bias[1, pitch] < 0 and bias[1, soon] < bias[1, late] == 0  # ahead: wait
    full = density_bias(tables, torch.tensor([6]), torch.tensor([21]), at[:1], sig[:1],
                        torch.tensor([1.0]))  # fmt: skip
    assert full[0, bar] == 0 > bias[1, bar]  # a bar that holds enough may end
    assert bias[0, int(V.offsets[T.VELOCITY])] == 0  # nothing else is biased
    none = density_bias(tables, torch.tensor([-1, 6]), torch.tensor([0, 0]), at, sig,
                        torch.tensor([1.0, 0.0]))  # fmt: skip
    assert not none.any()  # no density asked, or a strength of 0


def test_the_polyphony_bias_fills_a_chord_to_the_bin_and_no_further():
    tables = Tables(V)
    pitch, track, bar = (int(V.offsets[k]) for k in (T.PITCH, T.TRACK, T.BAR))
    move = int(V.offsets[T.POSITION]) + 5
    bias = polyphony_bias(tables, torch.tensor([3, 3, 3, -1]), torch.tensor([1, 4, 0, 2]),
                          torch.ones(4))  # fmt: skip
    assert bias[0, move] == bias[0, bar] < 0 == bias[0, pitch] == bias[0, track]  # 1 of 4
    assert bias[1, pitch] == bias[1, track] < 0 == bias[1, move]  # 4 of 4: move on
    assert not bias[2:].any()  # before the position's first note, or nothing asked


def test_the_register_bias_tilts_pitches_towards_the_bin():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    bias = register_bias(tables, torch.tensor([2, 2, -1]), torch.tensor([70.0, float("nan"),
                                                                         70.0]),
                         torch.ones(3))  # fmt: skip
    assert bias[0, at(58)] > bias[0, at(64)] > bias[0, at(70)] == 0 > bias[0, at(82)]
    assert bias[0, at(40)] == bias[0, at(58)]  # at most an octave's tilt
    assert bias[0, int(V.offsets[T.BAR])] == 0
    assert not bias[1:].any()  # no note yet, or no register asked


def test_the_tonal_bias_favours_the_tonic_and_dominant_of_the_key_asked():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    a_minor = parse_key("A minor")
    bias = tonal_bias(tables, torch.tensor([a_minor, parse_key("C major"), a_minor, -1]),
                      torch.tensor([1.0, 1.0, 0.0, 1.0]))  # fmt: skip
    # the C major chord's notes: in A minor its E (the dominant) comes first, in C major its C
    assert bias[0, at(64)] > bias[0, at(60)] > bias[0, at(67)]
    assert bias[1, at(60)] > bias[1, at(67)] > bias[1, at(64)]
    assert bias[0, at(57)] == bias[0, at(69)] == bias[0].max() > 0 > bias[0, at(70)]  # A, Bb
    assert bias[0, int(V.offsets[T.POSITION]) + 3] == 0  # only pitches
    assert not bias[2:].any()  # a strength of 0, or no key asked


def test_the_voice_bias_keeps_voices_in_range_and_without_leaps():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    bias = voice_bias(tables, torch.tensor([0, 3, -1]), torch.tensor([70.0, float("nan"), 70.0]),
                      torch.ones(3))  # fmt: skip
    assert bias[0, at(72)] == 0 and bias[0, at(77)] == 0  # in range, a fifth at most
    assert bias[0, at(79)] == -2 * LEAP and bias[0, at(81)] == -2 * RANGE - 4 * LEAP
    assert bias[1, at(30)] == -10 * RANGE and bias[1, at(50)] == 0  # no last pitch yet
    assert bias[2, at(90)] == -12 * LEAP and bias[2, at(100)] == -12 * LEAP  # no range
    assert bias[:, int(V.offsets[T.BAR])].eq(0).all()


def test_the_parallel_bias_catches_fifths_and_octaves_with_a_voice_that_moved():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    nan = float("nan")
    before = torch.tensor([[72.0, 65.0, nan], [72.0, 60.0, nan]])  # a fifth, an octave
    last = torch.tensor([[74.0, 65.0, nan], [74.0, 60.0, nan]])  # the upper voice moved up
    here = torch.tensor([[True, False, False]] * 2)
    bias = parallel_bias(tables, before, last, here, torch.tensor([1, 1]), torch.ones(2))
    assert bias[0, at(67)] == -PARALLEL  # 65 -> 67 under 72 -> 74: parallel fifths
    assert bias[0, at(65)] == bias[0, at(62)] == bias[0, at(69)] == 0  # held, contrary, a 5th
    assert bias[1, at(62)] == -PARALLEL and bias[1, at(86)] == -PARALLEL  # octaves
    assert bias[1, at(64)] == bias[1, at(50)] == 0  # a sixth, contrary octaves
    quiet = parallel_bias(tables, before, last, torch.zeros(2, 3, dtype=torch.bool),
                          torch.tensor([1, 1]), torch.ones(2))  # fmt: skip
    assert not quiet.any()  # no other voice sounded here
    below = parallel_bias(tables, torch.tensor([[60.0, 67.0]]), torch.tensor([[62.0, 67.0]]),
                          torch.tensor([[True, False]]), torch.tensor([1]), torch.ones(1))  # fmt: skip
    assert below[0, at(69)] == -PARALLEL  # 67 -> 69 over 60 -> 62: fifths above a voice too
    assert below[0, at(57)] == 0  # 67 -> 57 crosses below 60 -> 62: contrary, not parallel


def test_the_crossing_bias_keeps_a_voice_between_its_neighbours():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    nan = float("nan")
    voice = torch.tensor([[0, 1, 2, 3, -1]])  # soprano, alto, tenor, bass, a voiceless track
    last = torch.tensor([[67.0, nan, 55.0, 48.0, 90.0]])
    bias = crossing_bias(tables, voice, last, torch.tensor([1]), torch.tensor([2.0]))
    assert bias[0, at(67)] == bias[0, at(55)] == bias[0, at(60)] == 0  # unisons allowed
    assert bias[0, at(70)] == -3 * CROSS * 2  # three semitones above the soprano
    assert bias[0, at(52)] == -3 * CROSS * 2  # below the tenor
    assert bias[0, at(100)] == -12 * CROSS * 2  # at most an octave's worth
    assert bias[0, int(V.offsets[T.BAR])] == 0
    free = crossing_bias(tables, voice, last, torch.tensor([4]), torch.tensor([2.0]))
    assert not free.any()  # a track without a voice crosses nothing


def test_the_join_bias_leads_each_voice_into_the_music_after_a_gap():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    nan = float("nan")
    after = torch.tensor([[72.0, 65.0, nan], [nan, 67.0, 60.0]])  # what begins after the gap
    last = torch.tensor([[74.0, nan, nan], [nan, nan, 62.0]])  # what sounds now
    bias = join_bias(tables, after, last, torch.tensor([1, 1]), torch.tensor([2.0, 2.0]))
    assert bias[0, at(65)] == bias[0, at(58)] == bias[0, at(72)] == 0  # within a fifth
    assert bias[0, at(76)] == -2 * JOIN * LEAP * 4  # an eleventh down into 65: four past a fifth
    assert bias[0, at(67)] == -2 * JOIN * PARALLEL  # 67 -> 65 under 74 -> 72: parallel fifths
    assert bias[1, at(69)] == -2 * JOIN * PARALLEL  # 69 -> 67 over 62 -> 60: parallel fifths
    assert bias[1, at(64)] == 0  # 64 -> 67 over 62 -> 60: contrary motion
    assert bias[1, at(71)] == 0  # a sixth above, then a fifth: hidden, not parallel
    none = join_bias(tables, after, last, torch.tensor([2, 2]), torch.tensor([2.0, 2.0]))
    assert not none[0].any()  # track 2's next pitch is not known in row 0


def test_the_dissonance_bias_keeps_a_voice_consonant_with_those_sounding():
    tables = Tables(V)
    at = lambda p: V.token(T.PITCH, p)  # noqa: E731
    nan = float("nan")
    sounding = torch.tensor([[67.0, nan, 48.0, 61.0]])  # G4, the track itself, C3, a track
    sung = torch.tensor([[True, True, True, False]])  # ... that is no sung voice
    bias = dissonance_bias(tables, sounding, sung, torch.tensor([1]), torch.tensor([2.0]))
    assert bias[0, at(64)] == bias[0, at(60)] == bias[0, at(55)] == 0  # E, C, G: consonant
    assert bias[0, at(65)] == -2 * DISSONANCE  # F: a second below G (a fourth over C: fine)
    assert bias[0, at(59)] == -2 * DISSONANCE  # B: a seventh over C (a sixth under G)
    assert bias[0, at(66)] == -2 * 2 * DISSONANCE  # F#: a second and a tritone
    alone = dissonance_bias(tables, sounding, sung, torch.tensor([3]), torch.tensor([2.0]))
    assert not alone.any()  # a track that is no voice is left alone


def test_the_silence_bias_keeps_every_voice_of_the_pass_sounding():
    tables = Tables(V)
    wanted = torch.tensor([[False, True, True, True]])  # alto, tenor, bass to write
    end = torch.tensor([[99.0, 12.0, 6.0, 48.0]])  # where their notes end in the bar
    at, length = torch.tensor([6]), torch.tensor([48])
    bias = silence_bias(tables, wanted, end, at, length, torch.tensor([1.0]))
    track, pos = lambda k: V.token(T.TRACK, k), lambda q: V.token(T.POSITION, q)  # noqa: E731
    assert bias[0, track(2)] == 0  # the tenor (silent from step 6) is next
    assert bias[0, track(3)] == -SILENT  # writing the bass skips the silent tenor
    assert bias[0, pos(12)] == -SILENT  # the tenor stays silent until 12
    assert bias[0, pos(18)] == -2 * SILENT  # the tenor, and the alto from 12 on
    assert bias[0, int(V.offsets[T.BAR])] == -2 * SILENT  # the bass lasts to the bar's end
    assert bias[0, V.token(T.PITCH, 60)] == 0


def test_bars_follow_each_tracks_voice_and_last_pitch_in_the_pass():
    tk = Tokenizer(TokenizerConfig(tracks=16, controls=True, infill=True))
    v = tk.vocab
    ids = [BOS, v.token(T.TRACK, 0), v.token(T.PROGRAM, 0), v.token(T.VOICE, 0),
           v.token(T.TRACK, 1), v.token(T.PROGRAM, 0), v.token(T.VOICE, 3),
           v.token(T.BAR, 0), v.token(T.POSITION, 0), v.token(T.TRACK, 0), v.token(T.PITCH, 72),
           v.token(T.TRACK, 1), v.token(T.PITCH, 48)]  # fmt: skip
    bars = Bars(v, 1)
    for tok in ids:
        bars.update(torch.tensor([tok]))
    assert bars.voice[0, :2].tolist() == [0, 3] and bars.voice[0, 2] == -1
    assert bars.last[0, :2].tolist() == [72.0, 48.0] and bars.last[0, 2:].isnan().all()
    assert bars.notes.item() == 2
    assert bars.here[0, :2].all() and bars.before[0, :2].isnan().all()
    bars.update(torch.tensor([v.token(T.POSITION, 4)]))
    assert bars.before[0, :2].tolist() == [72.0, 48.0] and not bars.here.any()
    bars.update(torch.tensor([v.token(T.INFILL, 0)]))
    assert bars.last.isnan().all() and bars.voice[0, :2].tolist() == [0, 3]


def test_bars_follow_where_each_tracks_notes_end():
    tk = Tokenizer(TokenizerConfig(tracks=16, infill=True))
    v = tk.vocab
    three = next(t for t in range(v.size) if v.types[t] == T.TIMESIG and v.bar_steps[t] == 36)
    bars = Bars(v, 1)
    ids = [BOS, v.token(T.TRACK, 0), v.token(T.PROGRAM, 0), v.token(T.INFILL, 0),
           v.token(T.BAR, 0), v.token(T.TIMESIG, 0), v.token(T.POSITION, 12),
           v.token(T.TRACK, 0), v.token(T.PITCH, 60), v.token(T.VELOCITY, 5),
           v.token(T.DURATION, 47)]  # fmt: skip
    for tok in ids:
        bars.update(torch.tensor([tok]))
    assert bars.at.item() == 12 and bars.end[0, 0].item() == 60  # 12 + 48 steps
    assert bars.end[0, 1].item() < -1000  # nothing yet
    length = bars.length.item()
    for tok in (v.token(T.BAR, 0), three):
        bars.update(torch.tensor([tok]))
    assert bars.at.item() == -1 and bars.end[0, 0].item() == 60 - length  # from the new bar
    assert bars.length.item() == 36


def test_rows_of_different_strengths_share_a_batch():
    m = debug_model(vocab_size=V.size, max_seq_len=256)
    plan = ControlPlan(key=KEY, tracks=(PIANO,), bars={T.CHORD: CHORDS, T.DENSITY: (5,)})
    prompt = torch.as_tensor(plan_prompt(plan, V))

    def alone(steer: float) -> np.ndarray:
        engine = Engine(m, V, SamplingConfig(greedy=True, steer=steer))
        engine.add([prompt], 3, 120, [plan])
        run(engine)
        return engine.row(0).numpy()

    engine = Engine(m, V, SamplingConfig(greedy=True))
    engine.add([prompt], 3, 120, [plan])
    for _ in range(5):
        engine.step()
    engine.add([prompt, prompt, torch.tensor([BOS])], 3, 120, [plan, plan, None],
               steer=[8.0, 0.0, 8.0])  # fmt: skip
    run(engine)
    assert np.array_equal(engine.row(0).numpy(), alone(0.0))
    assert np.array_equal(engine.row(1).numpy(), alone(8.0))
    assert np.array_equal(engine.row(2).numpy(), alone(0.0))
    assert not np.array_equal(alone(8.0), alone(0.0))


def test_a_bad_strength_is_refused():
    engine = Engine(debug_model(vocab_size=V.size), V, SamplingConfig(steer=-1.0))
    with pytest.raises(ValueError, match="steering strength must be 0 or more"):
        engine.add([torch.tensor([BOS])], 2, 10, [ControlPlan(key=KEY)])
