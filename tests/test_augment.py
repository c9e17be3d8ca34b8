"""Augmentation: each transformation keeps the music legal and changes only what it should."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from aurl.data import augment as aug
from aurl.data.config import AugmentConfig
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import folder_source
from aurl.data.windows import WindowDataset
from aurl.tokens import BOS, Tokenizer, TokenType

TK = Tokenizer()
V = TK.vocab
SPQ = V.config.steps_per_quarter
ALL_ON = AugmentConfig.model_validate({
    "tempo": {"p": 1.0}, "velocity": {"p": 1.0}, "instruments": {"p": 1.0},
    "humanize": {"p": 1.0, "timing_steps": 3, "swing_steps": 2, "velocity_bins": 3},
})  # fmt: skip


def built_score() -> symusic.Score:
    """Four bars (4/4, 4/4, 3/4, 3/4) of piano, two strings of one family, a guitar and drums,
    with varied velocities, off-beat eighths and two tempo changes."""
    s = symusic.Score(SPQ)
    s.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    s.time_signatures.append(symusic.TimeSignature(8 * SPQ, 3, 4))
    for t, qpm in ((0, 100.0), (4 * SPQ, 140.0), (8 * SPQ, 70.0)):
        s.tempos.append(symusic.Tempo(t, qpm))
    rng = np.random.default_rng(0)
    for program, drum, low in ((0, False, 48), (48, False, 60), (49, False, 55), (25, False, 40),
                               (0, True, 36)):  # fmt: skip
        track = symusic.Track("t", program, drum)
        for beat in range(14):
            for half in (0, SPQ // 2):
                if rng.random() < 0.7:
                    pitch, vel = int(low + rng.integers(0, 24)), int(rng.integers(20, 120))
                    track.notes.append(symusic.Note(beat * SPQ + half, SPQ // 2, pitch, vel))
        s.tracks.append(track)
    return s


def notes(ids: np.ndarray) -> dict[tuple[int, bool], np.ndarray]:
    """Decoded notes per (program, is_drum): rows of (time, duration, pitch, velocity)."""
    out = {}
    for track in TK.decode(ids).tracks:
        a = track.notes.numpy()
        rows = np.stack([a["time"], a["duration"], a["pitch"], a["velocity"]], 1).astype(int)
        out[(int(track.program), bool(track.is_drum))] = rows[np.lexsort(rows.T[::-1])]
    return out


def same_notes(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def count(ids: np.ndarray, kind: TokenType) -> int:
    return int((V.types[ids] == kind).sum())


@pytest.fixture(scope="module")
def piece() -> np.ndarray:
    ids = TK.encode(built_score())
    assert TK.grammar.validate(ids) is None
    return ids


@pytest.fixture(scope="module")
def shard(small_corpus) -> Shard:
    # In the session's cache folder, where training on the same corpus finds it.
    return Shard(prepare(folder_source(small_corpus), TK, workers=1, progress=False).split("train"))


def test_transposed_piece_moves_pitched_notes_by_k_and_keeps_drums(piece):
    lo, hi = aug.transpose_range(piece, V, 127)  # highest piano note 71, lowest guitar note 40
    assert (lo, hi) == (-40, 127 - 83) and aug.transpose_range(piece, V, 12) == (-12, 12)
    before, after = notes(piece), notes(aug.transpose(piece, V, hi))
    assert TK.grammar.validate(aug.transpose(piece, V, hi)) is None
    for key, rows in before.items():
        moved = after[key]
        assert np.array_equal(np.delete(moved, 2, 1), np.delete(rows, 2, 1))
        assert np.array_equal(moved[:, 2] - rows[:, 2], np.full(len(rows), 0 if key[1] else hi))
    with pytest.raises(ValueError, match="outside"):
        aug.transpose(piece, V, hi + 1)


def test_time_stretch_changes_only_tempos_by_the_factor(piece):
    ratio = aug.tempo_bin_ratio(V)
    lo, hi = aug.tempo_shift_range(piece, V, 0.5, 2.0)
    # Factors 0.5 and 2 are 10.3 bins away; tempos 70..140 sit in bins 13..23 of 0..31.
    assert (lo, hi) == (-10, 31 - 23)
    stretched = aug.stretch_tempo(piece, V, hi)
    assert TK.grammar.validate(stretched) is None
    is_tempo = V.types[piece] == TokenType.TEMPO
    assert np.array_equal(stretched[~is_tempo], piece[~is_tempo])  # bars, positions, notes
    assert same_notes(notes(stretched), notes(piece))
    old = np.array([t.qpm for t in TK.decode(piece).tempos])
    new = np.array([t.qpm for t in TK.decode(stretched).tempos])
    assert len(old) == 3 and np.allclose(new / old, ratio**hi, rtol=1e-3)
    # Within bin rounding of the factor asked for: 1.2 is 2.7 bins, so 2 bins down to 3 up.
    lo, hi = aug.tempo_shift_range(piece, V, 1 / 1.2, 1.2)
    assert (lo, hi) == (-2, 2) and ratio**2 <= 1.2 < ratio**3
    without = piece[~is_tempo]
    assert aug.tempo_shift_range(without, V, 0.5, 2.0) == (0, 0)  # no Tempo: nothing inserted
    assert np.array_equal(aug.stretch_tempo(without, V, 2), without)


def test_velocity_scaling_keeps_the_order_of_velocities(piece):
    velocity = V.velocity_values[V.values[piece[V.types[piece] == TokenType.VELOCITY]]]
    for factor in (0.5, 0.9, 1.3, 3.0):
        scaled = aug.scale_velocity(piece, V, factor)
        assert TK.grammar.validate(scaled) is None
        is_vel = V.types[piece] == TokenType.VELOCITY
        assert np.array_equal(scaled[~is_vel], piece[~is_vel])
        new = V.velocity_values[V.values[scaled[is_vel]]]
        order = np.argsort(velocity, kind="stable")
        assert (np.diff(new[order]) >= 0).all()  # never reversed (ties may appear)
        assert np.allclose(new, np.clip(velocity * factor, 1, 127), atol=5)
    assert len(np.unique(velocity)) > 10


def test_substitution_keeps_families_and_drums_with_one_mapping(piece):
    mapping = aug.family_mapping(np.random.default_rng(3))
    assert np.array_equal(np.sort(mapping[:128].reshape(16, 8), 1), np.arange(128).reshape(16, 8))
    assert mapping[128] == 128
    swapped = aug.substitute_programs(piece, V, mapping)
    assert TK.grammar.validate(swapped) is None
    before, after = notes(piece), notes(swapped)
    assert len(before) == len(after) == 5
    for (program, drum), rows in before.items():
        new_program = program if drum else int(mapping[program])
        assert new_program // 8 == program // 8
        assert np.array_equal(after[(new_program, drum)], rows)  # same notes, one instrument
    changed = {int(mapping[p]) for p in (0, 25, 48, 49)} != {0, 25, 48, 49}
    assert changed or np.array_equal(mapping[:128], np.arange(128))


def test_humanize_keeps_bars_note_counts_and_legal_positions(piece):
    rng = np.random.default_rng(1)
    n_pos = count(piece, TokenType.POSITION)
    for _ in range(20):
        deltas = rng.integers(-8, 9, n_pos)
        moved = aug.shift_positions(piece, V, deltas)
        assert TK.grammar.validate(moved) is None
        is_pos = V.types[piece] == TokenType.POSITION
        assert np.array_equal(moved[~is_pos], piece[~is_pos])  # bars, notes, durations
        shift = V.values[moved[is_pos]] - V.values[piece[is_pos]]
        assert (np.abs(shift) <= np.abs(deltas)).all() and (np.sign(shift) * deltas >= 0).all()
        assert shift.any()
    jittered = aug.jitter_velocity(
        piece, V, rng.integers(-40, 41, count(piece, TokenType.VELOCITY))
    )
    assert TK.grammar.validate(jittered) is None
    assert sum(len(r) for r in notes(jittered).values()) == sum(
        len(r) for r in notes(piece).values()
    )


def test_swing_moves_off_beat_eighths_late():
    s = symusic.Score(SPQ)
    s.time_signatures.append(symusic.TimeSignature(0, 2, 4))
    track = symusic.Track("t", 0, False)
    for t in (0, 6, 12, 18, 21):  # eighths, then a sixteenth right after the last off-beat
        track.notes.append(symusic.Note(t, 3, 60, 80))
    s.tracks.append(track)
    ids = TK.encode(s)
    swung = aug.shift_positions(ids, V, aug.swing_deltas(ids, V, 2))
    assert TK.grammar.validate(swung) is None
    assert [int(n.time) for n in TK.decode(swung).tracks[0].notes] == [0, 8, 12, 19, 21]


def test_every_augmentation_keeps_whole_pieces_and_windows_legal(shard):
    for i in range(shard.num_pieces):
        out = aug.augment_window(shard.piece(i), V, ALL_ON, seed=4, index=i, step=0)
        assert out[0] == BOS and TK.grammar.validate(out) is None
        assert count(out, TokenType.BAR) == count(shard.piece(i), TokenType.BAR)
        assert count(out, TokenType.PITCH) == count(shard.piece(i), TokenType.PITCH)
    windows = WindowDataset(shard, V, 128, seed=4, transpose=6, augment=ALL_ON)
    sig_of = {int(V.bar_steps[t]): t for t in np.flatnonzero(V.types == TokenType.TIMESIG)}
    for index in range(300):
        ids = windows.window(index)
        j = windows._draw(index)[0]
        if ids[0] == BOS:
            assert TK.grammar.validate(ids) is None
            continue
        if V.types[ids[1]] == TokenType.TIMESIG:
            header = [BOS]  # the window's first bar brings its time signature
        else:
            header = [BOS, V.offsets[TokenType.BAR], sig_of[int(windows.bar_steps[j])]]
        assert TK.grammar.validate(np.concatenate([header, ids])) is None, index


def test_augmentation_depends_only_on_seed_index_and_step(piece):
    def run(seed, index, step):
        return aug.augment_window(piece, V, ALL_ON, seed, index, step)

    assert np.array_equal(run(1, 5, 0), run(1, 5, 0))
    assert not np.array_equal(run(1, 5, 0), run(1, 6, 0))
    assert not np.array_equal(run(1, 5, 0), run(2, 5, 0))
    # Each augmentation has its own random stream: turning one off leaves the others' draws.
    no_tempo = ALL_ON.model_copy(update={"tempo": ALL_ON.tempo.model_copy(update={"p": 0.0})})
    a, b = run(1, 5, 0), aug.augment_window(piece, V, no_tempo, 1, 5, 0)
    is_tempo = V.types[piece] == TokenType.TEMPO
    assert np.array_equal(a[~is_tempo], b[~is_tempo]) and not np.array_equal(a, b)


def test_schedule_ramps_the_probability(piece):
    ramp = AugmentConfig.model_validate(
        {"velocity": {"p": 0.5, "schedule": {"kind": "ramp", "start": 100, "end": 200}}}
    )
    schedule = ramp.velocity.schedule
    assert [aug.probability_at(0.5, schedule, s) for s in (0, 99, 100, 150, 200, 10**6)] == [
        0, 0, 0, 0.25, 0.5, 0.5
    ]  # fmt: skip
    assert aug.probability_at(0.3, AugmentConfig().tempo.schedule, 0) == 0.3

    def changed(step: int) -> float:
        outs = [aug.augment_window(piece, V, ramp, 0, i, step) for i in range(400)]
        return np.mean([not np.array_equal(o, piece) for o in outs])

    assert changed(50) == 0
    assert 0.15 < changed(150) < 0.35 and 0.4 < changed(300) < 0.6


def test_default_config_is_transposition_only(piece):
    assert np.array_equal(aug.augment_window(piece, V, AugmentConfig(), 0, 3, 10**6), piece)
    off = AugmentConfig.model_validate({"transpose": {"p": 0.0}})
    assert not aug.transposition_applies(off, 0, 3, 0)
    assert aug.transposition_applies(AugmentConfig(), 0, 3, 0)
