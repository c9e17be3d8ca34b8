"""The step engine and its cache: per-row positions, sliding windows, restarts, joining,
beam search and best-of-N, each against a plain twin."""

from __future__ import annotations

import itertools

import pytest
import symusic
import torch

from aurl.generate.beam import beam_search
from aurl.generate.engine import Engine, SamplingConfig, restart_point, run
from aurl.generate.sampler import sample
from aurl.tokens import BOS, EOS, PAD, Tokenizer, TokenType
from factories import debug_model

TK = Tokenizer()
BAR = int(TK.vocab.offsets[TokenType.BAR])
GREEDY = SamplingConfig(greedy=True)


def _prefill_then_steps(m, x: torch.Tensor, split: int) -> torch.Tensor:
    """Logits of ``x`` through the cache: the first ``split`` tokens at once, then one by one."""
    with torch.no_grad():
        cache = m.new_cache(x.shape[0])
        parts = [m(x[:, :split], cache=cache)]
        parts += [m(x[:, t : t + 1], cache=cache) for t in range(split, x.shape[1])]
    return torch.cat(parts, 1)


def test_rows_at_different_positions_match_each_row_alone():
    m = debug_model(max_seq_len=128)
    x = torch.randint(3, TK.vocab_size, (3, 70))
    lengths = torch.tensor([30, 12, 45])
    with torch.no_grad():
        cache = m.new_cache(3)
        first = m(x[:, :45], cache=cache, lengths=lengths, last_only=True)[:, -1]
        steps = [m(x[torch.arange(3), lengths + t][:, None], cache=cache)[:, -1]
                 for t in range(20)]  # fmt: skip
        for r in range(3):
            n = int(lengths[r])
            alone = m(x[r : r + 1, : n + 20])[0]
            assert torch.allclose(first[r], alone[n - 1], atol=1e-5)
            for t in range(20):
                assert torch.allclose(steps[t][r], alone[n + t], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_sliding_window_cache_equals_the_uncached_forward_past_several_windows(batch):
    m = debug_model(max_seq_len=64, window=16)
    x = torch.randint(3, TK.vocab_size, (batch, 90))  # more than five windows
    with torch.no_grad():
        full = m(x)  # band-masked attention over the whole sequence
    assert m.new_cache(batch).size == 16  # a ring of one window, whatever the length
    cached = _prefill_then_steps(m, x, 20)  # a prefill longer than the window
    assert torch.allclose(cached, full, atol=1e-5)


def test_the_window_limits_what_a_token_sees():
    m = debug_model(max_seq_len=64, window=8)
    x = torch.randint(3, TK.vocab_size, (1, 40))
    y = x.clone()
    y[0, :10] = 3  # change only tokens more than n_layer * window before the end
    with torch.no_grad():
        assert torch.allclose(m(x)[0, -1], m(y)[0, -1], atol=1e-6)
        assert not torch.allclose(m(x)[0, 12], m(y)[0, 12], atol=1e-4)


def test_window_must_fit_the_context():
    with pytest.raises(ValueError, match="window"):
        debug_model(max_seq_len=32, window=64)


def test_sliding_window_sampling_runs_past_the_context_without_restarts():
    m = debug_model(max_seq_len=32, window=16)
    prompt = torch.full((2, 1), BOS)
    a = sample(m, TK.vocab, prompt, 1000, 120, GREEDY)
    b = sample(m, TK.vocab, prompt, 1000, 120, SamplingConfig(greedy=True, use_cache=False))
    assert a.shape[1] > 100 and torch.equal(a, b)


def test_different_prompt_lengths_share_a_batch():
    m = debug_model()
    g = torch.Generator().manual_seed(0)
    long = sample(m, TK.vocab, torch.full((1, 1), BOS), 3, 60, SamplingConfig(), g)[0]
    prompts = [torch.tensor([BOS]), long[:25], long[:40]]
    together = sample(m, TK.vocab, prompts, 4, 50, GREEDY)
    for p, row in zip(prompts, together, strict=True):
        alone = sample(m, TK.vocab, [p], 4, 50, GREEDY)[0]
        assert torch.equal(row[row != PAD], alone[alone != PAD])


def _music(notes_per_beat: int, beats: int = 64) -> torch.Tensor:
    """Token ids of a 4/4 score with ``notes_per_beat`` notes on every beat."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for beat in range(beats):
        for k in range(notes_per_beat):
            track.notes.append(symusic.Note(beat * 480, 480, 60 + 2 * k + beat % 5, 80))
    score.tracks.append(track)
    ids = torch.as_tensor(TK.encode(score))
    return ids[ids != EOS]


def test_each_row_restarts_on_its_own_bar_line():
    ctx = 120
    prompts = [_music(n)[: ctx - 1 - n] for n in (1, 2, 3)]  # bars at different places
    m = debug_model(max_seq_len=ctx)
    for config in (GREEDY, SamplingConfig(greedy=True, use_cache=False)):
        engine = Engine(m, TK.vocab, config)
        engine.add(prompts, 100, 40)
        while not bool((engine.offset > 0).all()):
            engine.step()  # each row restarts as its own context fills
        starts = [int(engine.seq[r, engine.offset[r]]) for r in range(3)]
        assert starts == [BAR] * 3, starts
        assert len(set(engine.offset.tolist())) == 3  # three rows, three bar lines


def test_a_restart_keeps_from_the_bar_nearest_the_middle():
    window = torch.full((100,), 50)
    window[[10, 30, 45, 70, 90]] = BAR
    assert restart_point(window, BAR, 100) == 45  # not 30, the first in the middle half
    window[45], window[62] = 50, BAR
    assert restart_point(window, BAR, 100) == 62
    assert restart_point(torch.full((100,), 50), BAR, 100) == 50  # no Bar: the middle


def test_restarts_with_and_without_the_cache_agree():
    m = debug_model(max_seq_len=48)
    prompts = [torch.tensor([BOS]), torch.tensor([BOS, BAR])]
    a = sample(m, TK.vocab, prompts, 100, 200, GREEDY)
    b = sample(m, TK.vocab, prompts, 100, 200, SamplingConfig(greedy=True, use_cache=False))
    assert a.shape[1] > 100 and torch.equal(a, b)


def test_a_request_joining_a_running_batch_gets_what_it_gets_alone():
    m = debug_model()
    engine = Engine(m, TK.vocab, GREEDY)
    engine.add([torch.tensor([BOS])] * 2, 3, 80)
    for _ in range(30):
        engine.step()
    prompt = torch.tensor([BOS, BAR])
    (row,) = engine.add([prompt], 2, 60)
    run(engine)
    alone = sample(m, TK.vocab, [prompt], 2, 60, GREEDY)[0]
    assert torch.equal(engine.row(row), alone[alone != PAD])


def test_rows_that_end_leave_the_cache_and_the_others_go_on_as_alone():
    m = debug_model()
    prompts = [torch.tensor([BOS])] * 4
    budgets = [6, 9, 12, 70]
    engine = Engine(m, TK.vocab, GREEDY)
    engine.add(prompts, 100, budgets)
    held = []
    while not bool(engine.done.all()):
        engine.step()
        held.append(engine.cache.batch)
    assert held[0] == 4 and held[-1] == 1  # finished rows were dropped from the cache
    slow = Engine(m, TK.vocab, SamplingConfig(greedy=True, use_cache=False))
    slow.add(prompts, 100, budgets)
    run(slow)
    assert torch.equal(engine.padded(), slow.padded())
    (row,) = engine.add([torch.tensor([BOS, BAR])], 2, 30)  # into a dropped row's slot
    run(engine)
    alone = sample(m, TK.vocab, [torch.tensor([BOS, BAR])], 2, 30, GREEDY)[0]
    assert row < 3 and torch.equal(engine.row(row), alone[alone != PAD])


def test_a_joining_request_takes_a_finished_slot():
    m = debug_model()
    engine = Engine(m, TK.vocab, GREEDY)
    engine.add([torch.tensor([BOS])] * 2, 2, 5)
    run(engine)
    assert engine.add([torch.tensor([BOS])], 2, 5) == [0] and engine.batch == 2


def _tiny_lm(vocab: int = 5):
    """A model over ids 0..4 only (PAD, BOS, EOS and two reserved ids): small enough to
    enumerate every sequence."""
    return debug_model(vocab_size=vocab, seed=3)


def _exhaustive(m, prompt, max_tokens, alpha):
    best = None
    V = m.config.vocab_size
    for n in range(1, max_tokens + 1):
        for tail in itertools.product(range(V), repeat=n):
            if EOS in tail[:-1] or (n < max_tokens and tail[-1] != EOS):
                continue
            ids = torch.tensor([*prompt, *tail])
            with torch.no_grad():
                logp = torch.log_softmax(m(ids[None, :-1])[0], -1)
            total = float(logp[len(prompt) - 1 :].gather(1, ids[len(prompt) :, None]).sum())
            score = total / n**alpha
            if best is None or score > best[0]:
                best = (score, ids)
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_with_enough_beams_is_exhaustive_search(alpha):
    m = _tiny_lm()
    config = SamplingConfig(grammar=False, fill_bars=False, beams=125, length_penalty=alpha)
    ids, score = beam_search(m, TK.vocab, torch.tensor([BOS]), 10, 4, config)
    want_score, want_ids = _exhaustive(m, [BOS], 4, alpha)
    assert torch.equal(ids, want_ids)
    assert score == pytest.approx(want_score, abs=1e-5)


def test_one_beam_is_greedy_and_beams_keep_the_grammar():
    m = debug_model()
    prompt = torch.tensor([BOS])
    one = SamplingConfig(beams=1, greedy=True)
    greedy = sample(m, TK.vocab, [prompt], 2, 60, one)[0]
    ids, _ = beam_search(m, TK.vocab, prompt, 2, 60, SamplingConfig(beams=1, length_penalty=0))
    assert torch.equal(ids[ids != EOS], greedy[(greedy != PAD) & (greedy != EOS)][: len(ids)])
    out = sample(m, TK.vocab, [prompt], 2, 80, SamplingConfig(beams=4))
    assert TK.grammar.validate(out[0][out[0] != PAD].tolist()) is None


def test_best_of_keeps_the_most_likely_candidate():
    m = debug_model()
    prompt = torch.full((1, 1), BOS)
    config = SamplingConfig(best_of=4, top_p=0.9)
    best = sample(m, TK.vocab, prompt, 2, 40, config, torch.Generator().manual_seed(1))[0]
    engine = Engine(m, TK.vocab, config, torch.Generator().manual_seed(1))
    engine.add([prompt[0]] * 4, 2, 40)
    run(engine)
    means = engine.logp / (engine.length - 1)
    assert torch.equal(best[best != PAD], engine.row(int(means.argmax())))
    for r in range(4):  # the recorded likelihood is the model's
        ids = engine.row(r)
        with torch.no_grad():
            logp = torch.log_softmax(m(ids[None, :-1])[0], -1)
        assert float(logp.gather(1, ids[1:, None]).sum()) == pytest.approx(
            float(engine.logp[r]), abs=1e-3)  # fmt: skip


def test_best_of_with_a_judge_keeps_its_choice_then_the_likeliest():
    m = debug_model()
    prompt = torch.full((1, 1), BOS)
    config = SamplingConfig(best_of=4, top_p=0.9)
    engine = Engine(m, TK.vocab, config, torch.Generator().manual_seed(1))
    engine.add([prompt[0]] * 4, 2, 40)
    run(engine)
    rows = [engine.row(r) for r in range(4)]
    means = engine.logp / (engine.length - 1)
    judge = lambda p, ids: float(ids.sum())  # noqa: E731  (any score that tells rows apart)
    chosen = max(range(4), key=lambda r: judge(0, rows[r]))
    assert chosen != int(means.argmax())  # the judge overrules the likelihood here
    best = sample(m, TK.vocab, prompt, 2, 40, config, torch.Generator().manual_seed(1),
                  judge=judge)[0]  # fmt: skip
    assert torch.equal(best[best != PAD], rows[chosen])
    tie = sample(m, TK.vocab, prompt, 2, 40, config, torch.Generator().manual_seed(1),
                 judge=lambda p, ids: 0.0)[0]  # fmt: skip
    assert torch.equal(tie[tie != PAD], rows[int(means.argmax())])  # all equal: the likeliest


def _musical_model(**shape):
    v = TK.vocab
    first, count = int(v.offsets[TokenType.POSITION]), int(v.counts[TokenType.POSITION])
    return debug_model(musical_positions=True, bar_id=BAR, position_ids=(first, count),
                       bar_cycle=4, **shape)  # fmt: skip


def test_musical_positions_are_the_grammars_timeline():
    m = _musical_model()
    ids = _music(2, beats=12)
    bars, step = m.timeline.timeline(ids[None])
    bar_ref, pos_ref = TK.grammar.timeline(ids.numpy())
    assert bars[0].tolist() == (bar_ref + 1).tolist()
    assert step[0].tolist() == (pos_ref + 1).tolist()
    half = len(ids) // 2  # continuing from a state gives the same as the whole
    b1, s1 = m.timeline.timeline(ids[None, :half])
    b2, s2 = m.timeline.timeline(ids[None, half:], b1[:, -1], s1[:, -1])
    assert torch.equal(torch.cat([b1, b2], 1), bars) and torch.equal(torch.cat([s1, s2], 1), step)


def test_musical_positions_cached_equal_uncached_and_change_the_output():
    m = _musical_model(max_seq_len=128)
    torch.nn.init.normal_(m.timeline.bar.weight, std=0.5)  # make them matter
    ids = _music(1, beats=40)[None, :100].repeat(2, 1)
    assert torch.allclose(_prefill_then_steps(m, ids, 37), m(ids).detach(), atol=1e-5)
    with torch.no_grad():
        full = m(ids)
        plain = debug_model(max_seq_len=128)
        assert not torch.allclose(plain(ids), full, atol=1e-3)
    prompts = [ids[0, :30], ids[0, :55]]  # ragged prompts, restarts past the context
    a = sample(m, TK.vocab, prompts, 100, 150, GREEDY)
    b = sample(m, TK.vocab, prompts, 100, 150, SamplingConfig(greedy=True, use_cache=False))
    assert a.shape[1] > 128 and torch.equal(a, b)


def _hierarchical_model(**shape):
    return debug_model(window=16, bar_summaries=True, bar_id=BAR, **shape)


def test_hierarchical_cache_equals_the_full_forward_past_several_windows():
    m = _hierarchical_model(max_seq_len=64)
    x = torch.stack([_music(n, beats=40)[:110] for n in (1, 2, 3)])  # bars at different places
    with torch.no_grad():
        full = m(x)
    assert torch.allclose(_prefill_then_steps(m, x, 30), full, atol=1e-4)


def test_bar_summaries_let_a_token_see_past_its_window():
    m = _hierarchical_model(max_seq_len=128)
    x = _music(1, beats=40)[None, :100]
    y = x.clone()
    y[0, 3:8] = x[0, 3:8] + 1  # notes of the first bar only, far outside the last window
    plain = debug_model(max_seq_len=128, window=16)
    with torch.no_grad():
        assert torch.allclose(plain(x)[0, -1], plain(y)[0, -1], atol=1e-6)
        assert not torch.allclose(m(x)[0, -1], m(y)[0, -1], atol=1e-5)


def test_hierarchical_sampling_with_ragged_prompts_cached_equals_uncached():
    m = _hierarchical_model(max_seq_len=64)
    prompts = [_music(1)[:20], _music(2)[:45], torch.tensor([BOS])]
    a = sample(m, TK.vocab, prompts, 1000, 90, GREEDY)
    b = sample(m, TK.vocab, prompts, 1000, 90, SamplingConfig(greedy=True, use_cache=False))
    assert torch.equal(a, b)


def test_bar_summaries_need_a_window():
    with pytest.raises(ValueError, match="window"):
        debug_model(bar_summaries=True, bar_id=BAR)
