"""Sampling: pure filters, cache against no cache, grammar, bars, seeds, long contexts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurl.generate import filters
from aurl.generate.sampler import SamplingConfig, sample
from aurl.models import Transformer
from aurl.tokens import BOS, EOS, PAD, Tokenizer, TokenType
from factories import debug_model

TK = Tokenizer()


def random_model(ctx: int = 256) -> Transformer:
    return debug_model(max_seq_len=ctx)


def test_top_k_keeps_k():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    out = filters.top_k(logits, 2)
    assert torch.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert torch.equal(filters.top_k(logits, 0), logits)


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = filters.top_p(probs.log(), 0.75)
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = filters.top_p(probs.log(), 0.85)
    assert torch.isfinite(out).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filters.top_p(probs.log(), 0.01)).sum() == 1  # always one left


def test_fast_top_p_equals_full_sort():
    torch.manual_seed(0)
    for scale in (0.5, 3.0, 10.0):  # flat rows need the fallback, peaked rows do not
        logits = torch.randn(16, TK.vocab_size) * scale
        logits[:4, ::3] = float("-inf")  # masked ids, as the grammar leaves them
        for p in (0.5, 0.9, 0.95, 0.999):
            fast, slow = filters.top_p(logits, p), filters.top_p_sorted(logits, p)
            assert torch.equal(torch.isfinite(fast), torch.isfinite(slow))
            assert torch.equal(fast[torch.isfinite(fast)], slow[torch.isfinite(slow)])


def test_drawing_among_nucleus_candidates_matches_the_full_row():
    from aurl.generate.engine import _draw

    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0] + [-8.0] * 94])
    config = SamplingConfig(top_p=0.9)
    g = torch.Generator().manual_seed(0)
    fast = torch.stack([_draw(logits, config, g) for _ in range(4000)]).flatten()
    slow = torch.stack([filters.gumbel_sample(filters.top_p_sorted(logits, 0.9), g)
                        for _ in range(4000)]).flatten()  # fmt: skip
    kept = torch.isfinite(filters.top_p_sorted(logits, 0.9))[0]
    assert kept[fast].all() and kept[slow].all()  # never outside the nucleus
    f, s = (torch.bincount(x, minlength=100)[:6] / 4000 for x in (fast, slow))
    assert torch.allclose(f, s, atol=0.03)  # the same distribution


def test_temperature_and_mask():
    logits = torch.tensor([[2.0, -2.0]])
    assert torch.equal(filters.temperature(logits, 2.0), torch.tensor([[1.0, -1.0]]))
    masked = filters.apply_mask(logits, torch.tensor([[False, True]]))
    assert masked[0, 0] == float("-inf") and masked[0, 1] == -2.0


def test_greedy_with_and_without_cache_is_identical():
    m = random_model()
    prompt = torch.full((2, 1), BOS)
    a = sample(m, TK.vocab, prompt, 4, 150, SamplingConfig(greedy=True, use_cache=True))
    b = sample(m, TK.vocab, prompt, 4, 150, SamplingConfig(greedy=True, use_cache=False))
    assert torch.equal(a, b)


def test_greedy_with_bfloat16_attention_is_identical_with_and_without_cache():
    m = random_model()
    m.set_attention_dtype(torch.bfloat16)
    prompt = torch.full((3, 1), BOS)
    a = sample(m, TK.vocab, prompt, 4, 200, SamplingConfig(greedy=True, use_cache=True))
    b = sample(m, TK.vocab, prompt, 4, 200, SamplingConfig(greedy=True, use_cache=False))
    assert torch.equal(a, b)


def test_greedy_past_the_context_window_is_identical():
    m = random_model(ctx=48)
    prompt = torch.full((1, 1), BOS)
    a = sample(m, TK.vocab, prompt, 100, 200, SamplingConfig(greedy=True, use_cache=True))
    b = sample(m, TK.vocab, prompt, 100, 200, SamplingConfig(greedy=True, use_cache=False))
    assert a.shape[1] > 48 and torch.equal(a, b)


def test_grammar_makes_every_sample_valid_and_stops_at_bars():
    m = random_model()
    g = torch.Generator().manual_seed(3)
    out = sample(m, TK.vocab, torch.full((4, 1), BOS), 3, 400, SamplingConfig(), g)
    for row in out:
        ids = row[row != PAD].tolist()
        assert TK.grammar.validate(ids) is None
        bars = sum(TK.vocab.types[i] == TokenType.BAR for i in ids)
        assert bars <= 3
        if ids[-1] == EOS:  # ended early: only once its third bar had started
            assert bars == 3


def test_without_grammar_a_random_model_breaks_it():
    m = random_model()
    g = torch.Generator().manual_seed(3)
    out = sample(m, TK.vocab, torch.full((4, 1), BOS), 3, 100, SamplingConfig(grammar=False), g)
    assert any(TK.grammar.validate(row[row != PAD].tolist()) is not None for row in out)


def test_same_seed_same_music():
    m = random_model()
    runs = [sample(m, TK.vocab, torch.full((2, 1), BOS), 2, 120, SamplingConfig(top_p=0.9),
                   torch.Generator().manual_seed(7)) for _ in range(2)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])


def test_the_old_shipped_folder_generates_what_it_always_did():
    import json
    from pathlib import Path

    from aurl.api import load

    expected = json.loads((Path(__file__).parent / "data" / "shipped_greedy.json").read_text())
    gen = load("bach-small", device="cpu")
    piece = gen.generate(bars=2, sampling=SamplingConfig(greedy=True), seed=0).pieces[0]
    assert piece.ids.tolist() == expected["ids"]
    with torch.no_grad():
        logits = gen.model(torch.tensor([expected["ids"][:64]]))[0]
    for p, top in zip(expected["positions"], expected["logits_top5"], strict=True):
        got = torch.topk(logits[p], 5).values
        assert torch.allclose(got, torch.tensor(top), atol=1e-2), (p, got, top)  # bf16 attention


def test_streaming_yields_every_bar_of_every_piece_and_ends_as_generate_does():
    from aurl.api import load

    gen = load(device="cpu")
    events = list(gen.stream(bars=3, num=2, seed=11))
    for piece in (0, 1):
        mine = [e for e in events if e.piece == piece]
        assert [e.bar for e in mine] == [1, 2, 3] and [e.last for e in mine] == [0, 0, 1]
        assert all(e.bar_seconds > 0 for e in mine)
        for e in mine:  # the score so far holds that many bars
            assert int((gen.tokenizer.vocab.types[e.ids] == TokenType.BAR).sum()) == e.bar
    whole = gen.generate(bars=3, num=2, seed=11).pieces
    finals = {e.piece: e.ids for e in events if e.last}
    assert all(finals[i].tolist() == whole[i].ids.tolist() for i in (0, 1))


def test_bar_seconds_follow_time_signature_and_tempo():
    from aurl.generate.stream import bar_seconds

    v = TK.vocab
    sig34 = v.offsets[TokenType.TIMESIG] + v.signature_index[(3, 4)]
    tempo = int(np.argmin(np.abs(v.tempo_values - 60))) + v.offsets[TokenType.TEMPO]
    bar = v.offsets[TokenType.BAR]
    ids = np.array([BOS, bar, sig34, bar, sig34, tempo, EOS])
    qpm = float(v.tempo_values[tempo - v.offsets[TokenType.TEMPO]])
    assert bar_seconds(ids, v) == pytest.approx([1.5, 3 * 60 / qpm])
