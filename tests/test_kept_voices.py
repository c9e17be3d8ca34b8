"""The kept tracks of a track-filling pass: read step by step from the first pass, followed
position by position through the second, and steered against (crossings, parallels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurl.generate.controls import ControlPlan
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.generate.infill import fill_prompt, harmony_ids
from aurl.generate.kept_voices import KeptVoices
from aurl.midi import read_midi
from aurl.tokens import Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.grammar import bar_starts
from aurl.tokens.infill import (
    Bar,
    infill_example,
    join_bar,
    kept_sounding,
    marked_signatures,
    second_pass_notes,
    split_bars,
)
from factories import debug_model

T = TokenType
TK = Tokenizer(TokenizerConfig(tracks=16, infill=True, infill_context=1))
V = TK.vocab
ALL = Tokenizer(TokenizerConfig(tracks=16, infill=True)).vocab  # no repeated bars


def _chorale(bach_source, k: int = 5) -> np.ndarray:
    return TK.encode(read_midi(bach_source.files[k]))


def _sounding(notes, track: int, t: int) -> float:
    """The highest pitch of ``track`` sounding at step ``t`` (NaN: none)."""
    found = [p for k, time, dur, p, _ in notes if k == track and time <= t < time + dur]
    return float(max(found)) if found else float("nan")


def test_kept_sounding_gives_each_kept_tracks_pitch_at_every_step(bach_source):
    ids = _chorale(bach_source)
    starts = bar_starts(ids, V)
    notes = second_pass_notes(infill_example(ids, ALL, 0, len(starts) - 1), ALL)  # every note
    example = infill_example(ids, V, 3, 2, {1, 2})
    pitch, onset, repeated = kept_sounding(example, V, 16)
    assert repeated == 1 and pitch.shape == (2, V.max_bar_steps + 2, 16)
    for m, b in enumerate((3, 4)):
        for s in range(int(starts[b + 1] - starts[b])):
            t = int(starts[b]) + s
            for k in (0, 3):  # kept: what the piece sounds
                np.testing.assert_equal(pitch[m, s + 1, k], _sounding(notes, k, t))
                assert onset[m, s, k] == any(n[0] == k and n[1] == t for n in notes)
            assert np.isnan(pitch[m, s + 1, 1:3]).all() and not onset[m, s, 1:3].any()
        np.testing.assert_equal(pitch[m, 0, 0], _sounding(notes, 0, int(starts[b]) - 1))
    assert np.isnan(pitch[0, -1]).all()  # bar 4 is marked too: nothing kept follows bar 3
    for k in range(4):  # after bar 4, every track as bar 5 begins
        np.testing.assert_equal(pitch[1, -1, k], _sounding(notes, k, int(starts[5])))
    gap, _, _ = kept_sounding(infill_example(ids, V, 3, 2), V, 16)  # whole bars: none kept
    assert gap.shape[0] == 2 and np.isnan(gap[:, 1:-1]).all() and not np.isnan(gap[1, -1, 0])
    none, _, _ = kept_sounding(ids, V, 16)
    assert none.shape[0] == 0


def test_kept_voices_follow_the_second_pass_position_by_position(bach_source):
    ids = _chorale(bach_source)
    example = infill_example(ids, V, 2, 3, {0, 2})
    pitch, onset, repeated = kept_sounding(example, V, 16)
    kept = KeptVoices(V, 1)
    kept.load(torch.as_tensor(example[None]))
    at = int(np.flatnonzero(V.types[example] == T.INFILL)[0])
    bar, checked = -1, 0
    for i, tok in enumerate(example.tolist()):
        kept.update(torch.tensor([tok]))
        if i <= at:
            assert kept.now.isnan().all()
            continue
        bar += V.types[tok] == T.BAR
        if V.types[tok] == T.BAR:  # what the kept music after the bar begins with
            want = pitch[bar - repeated, -1] if bar >= repeated else np.full(16, np.nan)
            torch.testing.assert_close(kept.after[0], torch.as_tensor(want, dtype=torch.float32),
                                       equal_nan=True)  # fmt: skip
        if V.types[tok] == T.POSITION and bar >= repeated:
            step = int(V.values[tok])
            want = torch.as_tensor(pitch[bar - repeated, step + 1], dtype=torch.float32)
            torch.testing.assert_close(kept.now[0], want, equal_nan=True)
            before = torch.as_tensor(pitch[bar - repeated, step], dtype=torch.float32)
            torch.testing.assert_close(kept.before[0], before, equal_nan=True)
            assert kept.starts[0].tolist() == onset[bar - repeated, step].tolist()
            checked += 1
    assert checked > 10


def test_rows_with_and_without_kept_tracks_share_a_batch(bach_source):
    ids = _chorale(bach_source)
    a, b = KeptVoices(V, 1), KeptVoices(V, 1)
    a.load(torch.as_tensor(infill_example(ids, V, 1, 4, {1})[None]))
    b.extend(a)  # a row with no marked bars, and one with four
    assert b.pitch.shape[:2] == (2, 4) and b.pitch[0].isnan().all()
    torch.testing.assert_close(b.pitch[1], a.pitch[0], equal_nan=True)
    b.put(torch.tensor([0]), a)
    torch.testing.assert_close(b.pitch[0], a.pitch[0], equal_nan=True)


@pytest.mark.parametrize("steer", [0.0, 10.0])
def test_steered_harmonies_keep_below_the_kept_melody(bach_source, steer):
    """Alto, tenor and bass written under a chorale's soprano by an untrained model: with
    steering every voice sounds and no note starts above the soprano sounding at its start;
    without, some do."""
    ids = _chorale(bach_source, 9)
    end = int(np.flatnonzero(V.types[ids] == T.BAR)[4])
    melody = _soprano_only(ids[:end])
    context, tracks = harmony_ids(melody, V)
    prompt, max_bars, _ = fill_prompt(context, V, 0, 4, tracks)
    model = debug_model(vocab_size=V.size, max_seq_len=1024)
    engine = Engine(model, V, SamplingConfig(steer=steer), torch.Generator().manual_seed(0))
    plan = ControlPlan(fill_tracks=tuple(sorted(tracks)), fills=True)
    engine.add([torch.as_tensor(prompt)] * 4, max_bars, 600, [plan] * 4)
    run(engine)
    above = 0
    for r in range(4):
        row = engine.row(r).numpy()
        pitch, _, _ = kept_sounding(row, V, 16)
        starts = bar_starts(row, V)
        written = second_pass_notes(row, V)
        if steer:  # and every voice asked for sounds
            assert {n[0] for n in written} == tracks
        for track, time, _, p, _ in written:
            bar = int(np.searchsorted(starts, time, side="right")) - 1
            soprano = pitch[bar, time - int(starts[bar]) + 1, 0]
            above += track in tracks and not np.isnan(soprano) and p > soprano
    assert (above == 0) if steer else (above > 0)


def _soprano_only(ids: np.ndarray) -> np.ndarray:
    """A chorale's first track alone, as a one-track piece."""
    head, bars, _ = split_bars(ids, V)
    first = [int(t) for t in head]
    cut = [i for i, t in enumerate(first) if V.types[t] == T.TRACK][1]
    out = first[:cut]
    for bar in bars:
        events = [(pos, [n for n in notes if n[0] == 0]) for pos, notes in bar.events]
        out += join_bar(Bar(bar.opening, events), V)
    return np.array(out, np.int64)


def test_each_bar_of_a_second_pass_opens_with_its_marked_bars_time_signature(bach_source):
    """An untrained model fills three bars (steered or not): every bar of its second pass
    has the TimeSig its marked bar has, so no note spills past the bar."""
    ids = _chorale(bach_source, 3)
    sig = next(t for t in ids if V.types[t] == T.TIMESIG)
    assert marked_signatures(infill_example(ids, V, 2, 3), V).tolist() == [sig] * 3
    assert len(marked_signatures(ids, V)) == 0
    prompt, max_bars, _ = fill_prompt(ids, V, 2, 3)
    model = debug_model(vocab_size=V.size, max_seq_len=1024)
    engine = Engine(model, V, SamplingConfig(), torch.Generator().manual_seed(1))
    engine.add([torch.as_tensor(prompt)] * 4, max_bars, 400, [ControlPlan(fills=True)] * 4)
    run(engine)
    for r in range(4):
        row = engine.row(r).numpy()
        at = int(np.flatnonzero(V.types[row] == T.INFILL)[0])
        bars = np.flatnonzero(V.types[row[at:]] == T.BAR) + at
        assert len(bars) >= 3 and all(row[b + 1] == sig for b in bars)
