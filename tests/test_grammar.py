"""Grammar: encoded music validates, random ids do not, and the tensor mask agrees with the
plain-Python validator token by token."""

from __future__ import annotations

import numpy as np
import torch

from aurl.midi import read_midi
from aurl.tokens import BOS, EOS, Tokenizer, TokenType
from aurl.tokens.mask import GrammarState

TK = Tokenizer()
V = TK.vocab
T = TokenType


def tok(kind: TokenType, value: int = 0) -> int:
    return V.offsets[kind] if kind in (T.BAR,) else V.token(kind, value)


FOUR_FOUR = V.time_signatures.index((4, 4))
NOTE = [tok(T.PITCH, 60), tok(T.VELOCITY, 20), tok(T.DURATION, 11)]
GOOD = [BOS, tok(T.BAR), tok(T.TIMESIG, FOUR_FOUR), tok(T.POSITION, 0), tok(T.PROGRAM, 0), *NOTE,
        tok(T.POSITION, 12), tok(T.TEMPO, 5), tok(T.PROGRAM, 0), *NOTE, tok(T.BAR), tok(T.BAR),
        tok(T.POSITION, 47), tok(T.PROGRAM, 3), *NOTE, EOS]  # fmt: skip


def test_good_sequence_and_timeline():
    assert TK.grammar.validate(GOOD) is None
    bars, pos = TK.grammar.timeline(GOOD)
    assert bars.tolist()[:4] == [-1, 0, 0, 0]
    assert pos[3] == 0 and pos[9] == 12 and pos[-2] == 47
    assert bars[-2] == 2


def test_every_chorale_validates(bach_source):
    for path in bach_source.files[::4]:
        ids = TK.encode(read_midi(path))
        assert TK.grammar.validate(ids) is None, path.name


def test_violations_say_where_and_why():
    cases = {
        "cannot follow the start": [tok(T.BAR)],
        "position 0 is not after position 12": GOOD[:3] + [tok(T.POSITION, 12), tok(T.PROGRAM, 0), *NOTE,
                                                           tok(T.POSITION, 0)],
        "past the bar (48 steps)": GOOD[:3] + [tok(T.POSITION, 50)],
        "expected TIMESIG": [BOS, tok(T.BAR), tok(T.POSITION, 0)],
        "expected VELOCITY": GOOD[:6] + [tok(T.DURATION, 3)],
        "outside the vocabulary": [BOS, V.size + 3],
    }  # fmt: skip
    for reason, ids in cases.items():
        violation = TK.grammar.validate(ids)
        assert violation is not None and reason in str(violation), (reason, violation)
        assert violation.index == len(ids) - 1


def test_random_sequences_mostly_fail():
    rng = np.random.default_rng(0)
    failures = [TK.grammar.validate(rng.integers(0, V.size, 40)) for _ in range(500)]
    assert sum(f is not None for f in failures) >= 495
    assert all(f.reason for f in failures if f is not None)


def legal_by_validation(prefix: list[int]) -> np.ndarray:
    """Slow twin of the mask: try every next token through the validator."""
    return np.array([TK.grammar.validate(prefix + [t]) is None for t in range(V.size)])


def test_mask_matches_validator(bach_source):
    ids = TK.encode(read_midi(bach_source.files[0])).tolist()
    prefixes = [[]] + [ids[:n] for n in (1, 2, 3, 4, 5, 7, 9, 15, 40, 77, 123)] + [GOOD[:-1], GOOD]
    for prefix in prefixes:
        state = GrammarState(V, 1)
        if prefix:
            state.feed(torch.tensor([prefix]))
        assert np.array_equal(state.mask()[0].numpy(), legal_by_validation(prefix)), len(prefix)


def test_batched_mask_equals_single(bach_source):
    seqs = [TK.encode(read_midi(p))[:60] for p in bach_source.files[:3]] + [np.array(GOOD[:60])]
    n = min(len(s) for s in seqs)
    batch = GrammarState(V, len(seqs))
    singles = [GrammarState(V, 1) for _ in seqs]
    for t in range(n):
        masks = batch.mask()
        for i, single in enumerate(singles):
            assert torch.equal(masks[i], single.mask()[0])
            single.update(torch.tensor([int(seqs[i][t])]))
        batch.update(torch.tensor([int(s[t]) for s in seqs]))
