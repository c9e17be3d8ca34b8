"""Tokenizer: round trips on built scores and on every chorale; the fast encoder against a
plain per-note reference."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from aurl.midi import read_midi
from aurl.midi.arrays import note_table, score_arrays
from aurl.tokens import BOS, EOS, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.encode import bar_grid, encode_many, grid_notes, score_to_notes
from aurl.tokens.vocab import DRUM_PROGRAM, tempo_bin, velocity_bin
from conftest import EDGE_CASES

TK = Tokenizer()


def built_score(seed: int = 0, n: int = 300) -> symusic.Score:
    """Notes on the grid over three instruments and drums, with tempo and meter changes."""
    rng = np.random.default_rng(seed)
    spq = TK.config.steps_per_quarter
    score = symusic.Score(spq)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    score.time_signatures.append(symusic.TimeSignature(8 * 48, 3, 4))  # bar 8
    score.time_signatures.append(symusic.TimeSignature(8 * 48 + 4 * 36, 6, 8))  # bar 12
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.tempos.append(symusic.Tempo(5 * 48 + 6, 80.0))
    for program, drum in ((0, False), (40, False), (73, False), (0, True)):
        t = symusic.Track("t", program, drum)
        time = rng.integers(0, 20 * 48, n).astype(np.int32)
        dur = rng.integers(1, 96, n).astype(np.int32)
        pitch = rng.integers(21 if not drum else 35, 109 if not drum else 82, n).astype(np.int8)
        vel = rng.integers(1, 128, n).astype(np.int8)
        t.notes = symusic.Note.from_numpy(time, dur, pitch, vel)
        score.tracks.append(t)
    return score


def note_set(score: symusic.Score, velocity_bins: int | None = None) -> list[tuple]:
    notes = score_to_notes(score, TK.config.steps_per_quarter)
    vel = (
        notes["velocity"]
        if velocity_bins is None
        else velocity_bin(notes["velocity"], velocity_bins)
    )
    rows = zip(notes["time"], notes["duration"], notes["pitch"], notes["program"], vel, strict=True)
    return sorted(tuple(int(x) for x in r) for r in rows)


def reference_encode(score: symusic.Score, tk: Tokenizer) -> list[int]:
    """The slow twin of the encoder: one Python step per event."""
    vocab, cfg = tk.vocab, tk.config
    off = vocab.offsets
    notes = score_to_notes(score, cfg.steps_per_quarter)
    last = int(notes["time"][-1])
    starts, sigs = bar_grid(score, vocab, last)
    tempos = [
        (round(t.time * cfg.steps_per_quarter / score.tpq), int(tempo_bin(t.qpm, vocab)))
        for t in score.tempos
    ]
    tempo_at: dict[int, int] = {}
    current = None
    for time, b in tempos:  # last per step, only when the bin changes
        tempo_at[time] = b
    changes = {}
    for time in sorted(tempo_at):
        if tempo_at[time] != current and time <= last:
            changes[time] = tempo_at[time]
        current = tempo_at[time]
    out, prev_sig = [BOS], None
    order = list(
        zip(
            *(notes[k].tolist() for k in ("time", "duration", "pitch", "velocity", "program")),
            strict=True,
        )
    )
    for b, start in enumerate(starts.tolist()):
        if start > last:
            break
        out.append(off[TokenType.BAR])
        if sigs[b] != prev_sig:
            out.append(off[TokenType.TIMESIG] + int(sigs[b]))
            prev_sig = sigs[b]
        end = starts[b + 1] if b + 1 < len(starts) else 1 << 60
        times = sorted(
            {t for t, *_ in order if start <= t < end} | {t for t in changes if start <= t < end}
        )
        for t in times:
            out.append(off[TokenType.POSITION] + t - start)
            if t in changes:
                out.append(off[TokenType.TEMPO] + changes[t])
            program = None
            for nt, dur, pitch, vel, prog in order:
                if nt != t:
                    continue
                if prog != program:
                    out.append(off[TokenType.PROGRAM] + prog)
                    program = prog
                out += [
                    off[TokenType.PITCH] + pitch,
                    off[TokenType.VELOCITY] + int(velocity_bin(vel, cfg.velocity_bins)),
                    off[TokenType.DURATION] + min(dur, vocab.counts[TokenType.DURATION]) - 1,
                ]
    return out + [EOS]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_built_score_round_trip(seed):
    score = built_score(seed)
    ids = TK.encode(score)
    back = TK.decode(ids)
    assert note_set(back, TK.config.velocity_bins) == note_set(score, TK.config.velocity_bins)
    assert any(t.is_drum for t in back.tracks)
    sigs = [(ts.time, ts.numerator, ts.denominator) for ts in back.time_signatures]
    assert sigs == [(0, 4, 4), (384, 3, 4), (528, 6, 8)]
    expected = TK.vocab.tempo_values[tempo_bin(np.array([120.0, 80.0]), TK.vocab)]
    assert np.allclose([t.qpm for t in back.tempos], expected, rtol=1e-3)  # nearest bins
    assert np.allclose(expected, [120, 80], rtol=0.04)
    assert np.array_equal(TK.encode(back), ids)  # decode -> encode is the identity on ids


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_encoder_matches_reference(seed):
    score = built_score(seed, n=80)
    assert TK.encode(score).tolist() == reference_encode(score, TK)


@pytest.mark.parametrize("tpq", [480, 96, 1000, 25, 7])
def test_grid_times_are_symusics_resample(tpq):
    rng = np.random.default_rng(tpq)
    score = symusic.Score(tpq)
    for program in (0, 40):
        t = symusic.Track("t", program, False)
        n = 400
        t.notes = symusic.Note.from_numpy(
            rng.integers(0, 200 * tpq, n).astype(np.int32),
            rng.integers(0, 8 * tpq, n).astype(np.int32),  # zero-length notes too
            rng.integers(21, 109, n).astype(np.int8),
            rng.integers(1, 128, n).astype(np.int8),
        )
        score.tracks.append(t)
    for spq, micro in ((4, 1), (12, 1), (4, 4)):
        ours = grid_notes(note_table([score], [score_arrays(score)]), spq, micro)
        grid = score.resample(spq * micro, min_dur=1)
        fine = np.concatenate([t.notes.numpy()["time"] for t in grid.tracks]).astype(np.int64)
        dur = np.concatenate([t.notes.numpy()["duration"] for t in grid.tracks]).astype(np.int64)
        theirs_time = (fine + micro // 2) // micro
        theirs_dur = np.maximum((dur + micro // 2) // micro, 1)
        assert sorted(zip(ours["time"].tolist(), ours["offset"].tolist(),
                          ours["duration"].tolist(), strict=True)) == sorted(
            zip(theirs_time.tolist(), (fine - theirs_time * micro).tolist(),
                theirs_dur.tolist(), strict=True))  # fmt: skip


def _batch_scores(bach_source) -> list[symusic.Score]:
    """Chorales, built scores with meter and tempo changes, a score without notes, a score
    whose tempo changes lie past its last note, and the readable edge-case files."""
    scores = [read_midi(p) for p in bach_source.files[:40]]
    scores += [built_score(seed, n=60) for seed in range(3)]
    empty = symusic.Score(480)
    empty.tempos.append(symusic.Tempo(0, 90.0))
    late = read_midi(bach_source.files[40])
    late.tempos.append(symusic.Tempo(late.end() + 5000, 60.0))
    scores += [empty, late, empty]
    if EDGE_CASES.is_dir():
        for path in sorted(EDGE_CASES.rglob("*.mid")):
            try:
                score = symusic.Score(str(path))
            except Exception:
                continue
            if score.tpq > 0 and score.note_num() < 100_000:
                scores.append(score)
    return scores


@pytest.mark.parametrize(
    "config",
    [
        TokenizerConfig(),
        TokenizerConfig(microtiming=4),
        TokenizerConfig(tracks=16),
        TokenizerConfig(tracks=2),
    ],  # fmt: skip
)
def test_batch_encoding_equals_one_at_a_time(bach_source, config):
    tk = Tokenizer(config)
    scores = _batch_scores(bach_source)
    alone = [tk.encode(s) for s in scores]
    for size in (2, 7, 64):
        together = []
        for first in range(0, len(scores), size):
            part = scores[first : first + size]
            arrays = [score_arrays(s) for s in part] if size == 7 else None
            together += encode_many(note_table(part, arrays), tk.vocab)
        assert len(together) == len(alone)
        for k, (a, b) in enumerate(zip(alone, together, strict=True)):
            assert np.array_equal(a, b), (size, k)
    assert encode_many(note_table([]), tk.vocab) == []


def test_every_chorale_round_trips(bach_source):
    assert len(bach_source.files) >= 400
    mismatched = []
    for path in bach_source.files:
        score = read_midi(path)
        ids = TK.encode(score)
        if note_set(TK.decode(ids), TK.config.velocity_bins) != note_set(
            score, TK.config.velocity_bins
        ):
            mismatched.append(path.name)
        if path.name.endswith("0.mid"):  # a tenth of them against the slow reference
            assert ids.tolist() == reference_encode(score, TK), path.name
    assert mismatched == []


def test_off_grid_notes_snap_to_the_grid():
    score = symusic.Score(480)
    t = symusic.Track("p", 0, False)
    t.notes.append(symusic.Note(13, 470, 60, 100))  # just after the downbeat, almost a quarter
    score.tracks.append(t)
    back = TK.decode(TK.encode(score))
    note = back.tracks[0].notes[0]
    assert (note.time, note.duration, note.pitch) == (0, 12, 60)


def test_long_notes_are_clipped_and_drums_kept_apart():
    score = symusic.Score(12)
    piano, drums = symusic.Track("p", 0, False), symusic.Track("d", 0, True)
    piano.notes.append(symusic.Note(0, 12 * 20, 60, 90))
    drums.notes.append(symusic.Note(0, 1, 36, 90))
    score.tracks.extend([piano, drums])
    back = TK.decode(TK.encode(score))
    by_drum = {t.is_drum: t for t in back.tracks}
    assert by_drum[False].notes[0].duration == TK.vocab.counts[TokenType.DURATION]
    assert by_drum[True].notes[0].pitch == 36 and by_drum[True].program == 0


def swung_score(spq: int = 480) -> symusic.Score:
    """Eighth notes played late, early and swung: off the 16th grid by a few ticks."""
    score = symusic.Score(spq)
    track = symusic.Track("p", 0, False)
    rng = np.random.default_rng(5)
    for i in range(64):
        jitter = int(rng.integers(-40, 41))
        swing = 80 if i % 2 else 0  # long-short eighths
        track.notes.append(
            symusic.Note(i * spq // 2 + swing + jitter + 60, spq // 3, 60 + i % 12, 90)
        )
    score.tracks.append(track)
    return score


def test_finer_grid_holds_32nds_and_triplets():
    tk = Tokenizer(TokenizerConfig(steps_per_quarter=24))
    score = symusic.Score(24)
    t = symusic.Track("p", 0, False)
    for i in range(16):  # 32nd notes, then eighth-note triplets, then 16th triplets
        t.notes.append(symusic.Note(i * 3, 3, 60 + i, 80))
    for i in range(6):
        t.notes.append(symusic.Note(48 + i * 8, 8, 70 + i, 80))
    for i in range(6):
        t.notes.append(symusic.Note(96 + i * 4, 4, 50 + i, 80))
    score.tracks.append(t)
    back = tk.decode(tk.encode(score))
    assert [(n.time, n.duration, n.pitch) for n in back.tracks[0].notes] == [
        (n.time, n.duration, n.pitch) for n in score.tracks[0].notes
    ]
    coarse = TK.decode(TK.encode(score))  # 12 steps per quarter cannot hold the 32nds
    assert [(n.time * 2, n.duration * 2) for n in coarse.tracks[0].notes][:16] != [
        (n.time, n.duration) for n in score.tracks[0].notes
    ][:16]


def test_microtiming_keeps_the_groove():
    micro = 8
    tk = Tokenizer(TokenizerConfig(microtiming=micro))
    score = swung_score()
    ids = tk.encode(score)
    assert tk.grammar.validate(ids) is None
    assert (tk.vocab.types[ids] == TokenType.MICROTIMING).sum() > 32
    back = tk.decode(ids)
    assert back.tpq == tk.config.steps_per_quarter * micro
    fine = score.resample(back.tpq, min_dur=1)
    assert [n.time for n in back.tracks[0].notes] == [n.time for n in fine.tracks[0].notes]
    # Strict quantization moves the same onsets onto the grid.
    strict = TK.decode(TK.encode(score))
    assert [n.time * micro for n in strict.tracks[0].notes] != [
        n.time for n in back.tracks[0].notes
    ]
    assert np.array_equal(tk.encode(back), ids)


def test_config_save_load(tmp_path):
    tk = Tokenizer(TokenizerConfig(steps_per_quarter=24, velocity_bins=16))
    tk.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.config == tk.config and again.vocab_size == tk.vocab_size


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="denominator must be one of"):
        TokenizerConfig(time_signatures=("4/3",))
    with pytest.raises(ValueError, match="not a time signature"):
        TokenizerConfig(time_signatures=("four",))
    with pytest.raises(ValueError, match="does not fit a grid"):
        Tokenizer(TokenizerConfig(steps_per_quarter=1, time_signatures=("3/8",)))
    with pytest.raises(ValueError):
        TokenizerConfig(steps_per_quarter=0)


def test_vocabulary_names_are_readable():
    v = TK.vocab
    assert v.name(v.token(TokenType.PITCH, 60)) == "Pitch_60"
    assert v.name(v.token(TokenType.PROGRAM, DRUM_PROGRAM)) == "Program_Drums"
    assert v.name(v.offsets[TokenType.BAR]) == "Bar"
