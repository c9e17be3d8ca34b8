"""Tracks in the token stream: round trips keep every note's track, the declarations and the
grammar hold, and the tensor mask lets a note name only a declared track."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from aurl.midi import read_midi
from aurl.midi.arrays import note_table
from aurl.tokens import BOS, EOS, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.encode import grid_notes
from aurl.tokens.mask import GrammarState
from aurl.tokens.tracks import (
    declared_tracks,
    program_in_force,
    track_in_force,
    track_names,
    voice_of,
)
from aurl.tokens.vocab import DRUM_PROGRAM, VOICE_NAMES
from conftest import EDGE_CASES

TK = Tokenizer(TokenizerConfig(tracks=16))
V = TK.vocab
T = TokenType


def track_notes(score: symusic.Score, tk: Tokenizer = TK) -> list[set[tuple]]:
    """Per track with notes, in order: the set of (time, duration, pitch) on the grid, one
    note (the longest) where several start together on one pitch (they sound as one)."""
    out = []
    for track in score.tracks:
        if not len(track.notes):
            continue
        one = symusic.Score(score.tpq)
        one.tracks.append(track.copy())
        notes = grid_notes(note_table([one]), tk.config.steps_per_quarter)
        longest: dict[tuple[int, int], int] = {}
        for t, d, p in zip(notes["time"].tolist(), notes["duration"].tolist(),
                           notes["pitch"].tolist(), strict=True):  # fmt: skip
            longest[t, p] = max(longest.get((t, p), 0), min(d, V.counts[T.DURATION]))
        out.append({(t, d, p) for (t, p), d in longest.items()})
    return out


def test_old_configs_keep_every_id():
    plain = Tokenizer()
    assert plain.vocab.size == 641 and not plain.vocab.has_tracks
    assert plain.vocab.counts[T.TRACK] == plain.vocab.counts[T.VOICE] == 0
    for kind in TokenType:
        if kind < T.TRACK:  # every type before the new ones keeps its ids
            assert V.offsets[kind] == plain.vocab.offsets[kind], kind
    assert V.size == 641 + 16 + len(VOICE_NAMES)


def test_every_chorale_keeps_its_voices(bach_source):
    lost = []
    for path in bach_source.files:
        score = read_midi(path)
        ids = TK.encode(score)
        assert TK.grammar.validate(ids) is None, path.name
        back = TK.decode(ids)
        if track_notes(back) != track_notes(score):
            lost.append(path.name)
        names = [t.name for t in score.tracks if len(t.notes)]
        if names[-4:] == ["Soprano", "Alto", "Tenor", "Bass"]:
            assert [t.name for t in back.tracks][-4:] == names[-4:], path.name
    assert lost == []


def test_multitrack_files_keep_their_tracks():
    if not EDGE_CASES.is_dir():
        pytest.skip(f"no edge-case folder at {EDGE_CASES}")
    checked = 0
    for path in sorted(EDGE_CASES.rglob("*.mid")):
        try:
            score = symusic.Score(str(path))
        except Exception:
            continue
        full = [t for t in score.tracks if len(t.notes)]
        if not 2 <= len(full) <= 16 or score.tpq <= 0 or score.note_num() > 50_000:
            continue
        back = TK.decode(TK.encode(score))
        assert track_notes(back) == track_notes(score), path.name
        programs = [128 if t.is_drum else int(t.program) for t in full]
        assert [128 if t.is_drum else int(t.program) for t in back.tracks] == programs, path.name
        checked += 1
    assert checked >= 5


def _score(tracks: list[tuple[str, int, bool]], notes: int = 8) -> symusic.Score:
    score = symusic.Score(12)
    for k, (name, program, drum) in enumerate(tracks):
        t = symusic.Track(name, program, drum)
        for i in range(notes):
            t.notes.append(symusic.Note(i * 12, 12, 40 + 5 * k + i % 3, 80))
        score.tracks.append(t)
    return score


def test_tracks_past_the_limit_join_one_of_their_program():
    tk = Tokenizer(TokenizerConfig(tracks=2))
    score = _score([("a", 40, False), ("b", 0, False), ("c", 40, False), ("d", 73, False)])
    back = tk.decode(tk.encode(score))
    assert [t.program for t in back.tracks] == [40, 0]
    assert back.note_num() == score.note_num()
    assert len(back.tracks[0].notes) == 16 and len(back.tracks[1].notes) == 16


def test_declarations_names_and_programs():
    score = _score([("Violin I", 40, False), ("Violin II", 40, False), ("Cello", 42, False),
                    ("Drums", 0, True), ("Canto", 52, False)])  # fmt: skip
    ids = TK.encode(score)
    assert [V.name(i) for i in ids[:4]] == ["Bos", "Track_0", "Program_40", "Track_1"]
    programs, voices = declared_tracks(ids, V)
    assert programs == [40, 40, 42, DRUM_PROGRAM, 52]
    assert voices == [-1, -1, -1, -1, VOICE_NAMES.index("Soprano")]
    back = TK.decode(ids)
    assert [t.name for t in back.tracks] == ["Violin 1", "Violin 2", "Cello", "Drums", "Soprano"]
    assert back.tracks[3].is_drum
    body = np.arange(len(ids)) > np.flatnonzero(V.types[ids] == T.BAR)[0]
    pitched = body & (V.types[ids] == T.PITCH)
    assert set(program_in_force(ids, V)[pitched].tolist()) == {40, 42, DRUM_PROGRAM, 52}
    assert set(track_in_force(ids, V)[pitched].tolist()) == {0, 1, 2, 3, 4}


def test_voice_names():
    assert voice_of("Soprano 2") == 0 and voice_of("ALTUS") == 1 and voice_of("Tenore") == 2
    assert voice_of("Basso continuo") == 3 and voice_of("Singstimme Voice") == 6
    assert voice_of("Violin") == -1 and voice_of("") == -1
    assert track_names([0, 0, 40], [0, 0, -1]) == ["Soprano 1", "Soprano 2", "Violin"]


def tok(kind: TokenType, value: int = 0) -> int:
    return V.offsets[kind] if kind == T.BAR else V.token(kind, value)


NOTE = [tok(T.PITCH, 60), tok(T.VELOCITY, 20), tok(T.DURATION, 11)]
HEAD = [BOS, tok(T.TRACK, 0), tok(T.PROGRAM, 0), tok(T.VOICE, 0), tok(T.TRACK, 1),
        tok(T.PROGRAM, 40)]  # fmt: skip
GOOD = HEAD + [tok(T.BAR), tok(T.TIMESIG, V.time_signatures.index((4, 4))), tok(T.POSITION, 0),
               tok(T.TRACK, 0), *NOTE, tok(T.TRACK, 1), *NOTE, tok(T.POSITION, 12),
               tok(T.TRACK, 1), *NOTE, EOS]  # fmt: skip


def test_track_violations_say_why():
    assert TK.grammar.validate(GOOD) is None
    cases = {
        "track 2 declared where track 1 is next": [BOS, tok(T.TRACK, 0), tok(T.PROGRAM, 0),
                                                   tok(T.TRACK, 2)],
        "track 2 was not declared (2 were)": GOOD[:9] + [tok(T.TRACK, 2)],
        "expected PROGRAM": [BOS, tok(T.TRACK, 0), tok(T.PITCH, 60)],
        "expected TEMPO, TRACK": GOOD[:9] + [tok(T.PROGRAM, 0)],
        "pitch 60 after pitch 60 in one track": GOOD[:13] + [tok(T.PITCH, 60)],
        "pitch 59 after pitch 60 in one track": GOOD[:13] + [tok(T.PITCH, 59)],
        "track 0 after track 1 at one position": GOOD[:17] + [tok(T.TRACK, 0)],
        "track 1 after track 1 at one position": GOOD[:17] + [tok(T.TRACK, 1)],
    }  # fmt: skip
    for reason, ids in cases.items():
        violation = TK.grammar.validate(ids)
        assert violation is not None and reason in str(violation), (reason, violation)
        assert violation.index == len(ids) - 1


def test_each_tracks_pitches_rise_at_a_position_and_start_again_at_the_next():
    chord = GOOD[:13] + [tok(T.PITCH, 64), *NOTE[1:], tok(T.TRACK, 1), *NOTE,
                         tok(T.POSITION, 12), tok(T.TRACK, 0), *NOTE, EOS]  # fmt: skip
    assert TK.grammar.validate(chord) is None
    state = GrammarState(V, 1)
    state.feed(torch.tensor([GOOD[:13]]))  # ... Position_0 Track_0 Pitch_60 Velocity Duration
    mask = state.mask()[0]
    pitches = V.offsets[T.PITCH] + torch.arange(V.counts[T.PITCH])
    assert mask[pitches].tolist() == [False] * 61 + [True] * 67
    assert not mask[tok(T.TRACK, 0)] and mask[tok(T.TRACK, 1)]


def test_notes_together_on_one_pitch_of_a_track_become_the_longest():
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for time, duration, pitch in ((0, 240, 60), (0, 960, 60), (2, 480, 60), (0, 480, 64)):
        track.notes.append(symusic.Note(time, duration, pitch, 80))
    score.tracks.append(track)
    ids = TK.encode(score)
    assert TK.grammar.validate(ids) is None
    notes = TK.decode(ids).tracks[0].notes
    assert sorted((n.time, n.duration, n.pitch) for n in notes) == [(0, 12, 64), (0, 24, 60)]


def legal_by_validation(prefix: list[int]) -> np.ndarray:
    return np.array([TK.grammar.validate(prefix + [t]) is None for t in range(V.size)])


def test_mask_matches_validator_with_tracks(bach_source):
    ids = TK.encode(read_midi(bach_source.files[0])).tolist()
    prefixes = [ids[:n] for n in range(0, 30)] + [ids[:77], GOOD[:-1]]
    for prefix in prefixes:
        state = GrammarState(V, 1)
        if prefix:
            state.feed(torch.tensor([prefix]))
        assert np.array_equal(state.mask()[0].numpy(), legal_by_validation(prefix)), len(prefix)


def test_mask_allows_only_declared_tracks_in_a_batch():
    prompts = [GOOD[:9], HEAD[:3] + GOOD[6:9]]  # two tracks declared, and one
    state = GrammarState(V, 2)
    state.feed(torch.tensor([prompts[0], [*prompts[1], 0, 0, 0][: len(prompts[0])]]),
               torch.tensor([len(p) for p in prompts]))  # fmt: skip
    mask = state.mask()
    tracks = V.offsets[T.TRACK] + torch.arange(V.counts[T.TRACK])
    assert mask[0, tracks].tolist() == [True, True] + [False] * 14
    assert mask[1, tracks].tolist() == [True] + [False] * 15
    assert not mask[:, V.offsets[T.PROGRAM] : V.offsets[T.PROGRAM] + 129].any()


@pytest.fixture(scope="module")
def track_shard(small_corpus):
    from aurl.data.prepare import prepare
    from aurl.data.shards import Shard
    from aurl.data.sources import folder_source

    return Shard(prepare(folder_source(small_corpus), TK, workers=1, progress=False).split("train"))


def test_windows_inside_a_piece_open_with_its_declarations(track_shard):
    from aurl.data.augment import augment_window  # noqa: F401  (windows augment the prefix too)
    from aurl.data.config import AugmentConfig
    from aurl.data.windows import WindowDataset

    augment = AugmentConfig.model_validate({"instruments": {"p": 1.0}, "tempo": {"p": 0.5}})
    windows = WindowDataset(track_shard, V, 96, seed=3, transpose=3, augment=augment)
    inside = 0
    for i in range(60):
        ids = windows.window(i)
        assert len(ids) <= 97 and ids[0] == BOS
        j, start = windows._draw(i)[:2]
        piece = track_shard.tokens[windows.piece_starts[j] : windows.ends[j]]
        head = int(np.flatnonzero(V.types[piece] == T.BAR)[0])
        own = declared_tracks(np.asarray(piece), V)[0]
        got = declared_tracks(ids, V)[0]
        assert len(got) == len(own)  # programs may be swapped within their family
        assert len(ids[: head + 1]) == head + 1 and V.types[ids[head]] == T.BAR
        inside += start > windows.piece_starts[j]
        body = ids[head:]
        tracks = V.values[body[V.types[body] == T.TRACK]]
        assert tracks.max() < len(got)
    assert inside > 30


def test_a_restarted_context_keeps_the_declarations(bach_source):
    from aurl.generate.engine import Engine, SamplingConfig
    from aurl.generate.sampler import sample
    from factories import debug_model

    m = debug_model(vocab_size=V.size, max_seq_len=200)
    prompt = torch.as_tensor(TK.encode(read_midi(bach_source.files[0])))[:195]
    head = int((prompt == V.offsets[T.BAR]).nonzero()[0])
    greedy = SamplingConfig(greedy=True)
    engine = Engine(m, V, greedy)
    engine.add([prompt, prompt[:160]], 100, 150)  # both restart inside the prompt's bars
    while not bool((engine.offset > 0).all()):
        engine.step()
    assert engine.head.tolist() == [head, head]
    context, sizes = engine._context(engine.seq, engine.offset, engine.length, engine.head)
    for r in range(2):
        assert torch.equal(context[r, :head], prompt[:head])
        assert int(context[r, head]) == V.offsets[T.BAR]
    a = sample(m, V, [prompt, prompt[: head + 1]], 100, 300, greedy)
    b = sample(m, V, [prompt, prompt[: head + 1]], 100, 300,
               SamplingConfig(greedy=True, use_cache=False))  # fmt: skip
    assert a.shape[1] > 200 and torch.equal(a, b)
    for row in a:
        ids = row[row != 0].numpy()
        assert TK.grammar.validate(ids) is None


def test_a_model_trained_with_tracks_continues_with_the_prompts_tracks(feature_run, small_corpus):
    from aurl.api import load

    gen = load(feature_run, device="cpu")
    assert gen.tokenizer.vocab.has_tracks
    path = next(iter(sorted(small_corpus.glob("*.mid"))))
    prompt, taken = gen.prompt_ids(path, 2)
    result = gen.generate(bars=3, num=2, seed=0, prompt=prompt, prompt_bars=taken)
    programs, voices = declared_tracks(prompt, gen.tokenizer.vocab)
    want = list(zip(track_names(programs, voices), programs, strict=True))
    assert [w[0] for w in want][-4:] == ["Soprano", "Alto", "Tenor", "Bass"]
    for piece in result.pieces:
        assert gen.tokenizer.grammar.validate(piece.ids) is None
        got = [(t.name, t.program) for t in piece.score.tracks]
        assert set(got) <= set(want) and len(got) >= 1
        vocab = gen.tokenizer.vocab
        assert declared_tracks(piece.ids, vocab) == declared_tracks(prompt, vocab)
