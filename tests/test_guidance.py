"""Classifier-free guidance of the controls: the unconditional twin reads each row without its
control tokens, the cached twin equals the recomputed one, and the mix is what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aurl.generate.control_names import parse_chords, parse_key
from aurl.generate.controls import ControlPlan, plan_prompt
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.generate.guidance import Guide, drop_control_tokens
from aurl.tokens import BOS, PAD, Tokenizer, TokenizerConfig, TokenType
from aurl.tokens.controls import CONTROL_TYPES, drop_controls
from factories import debug_model

TK = Tokenizer(TokenizerConfig(tracks=16, controls=True))
V = TK.vocab
T = TokenType
PLAN = ControlPlan(style=1, key=parse_key("G major"),
                   bars={T.DENSITY: (3, 5), T.REGISTER: (4,), T.CHORD: parse_chords("I V", 7)})  # fmt: skip


def _is_control() -> torch.Tensor:
    return torch.isin(torch.as_tensor(V.types), torch.tensor([int(k) for k in CONTROL_TYPES]))


def test_dropping_control_tokens_packs_each_row_to_the_left():
    density, key = V.token(T.DENSITY, 2), V.token(T.KEY, 3)
    bar = int(V.offsets[T.BAR])
    context = torch.tensor([[BOS, key, bar, density, 40], [BOS, bar, 41, PAD, PAD]])
    ids, sizes = drop_control_tokens(context, torch.tensor([5, 3]), _is_control())
    assert sizes.tolist() == [3, 3]
    assert ids.tolist() == [[BOS, bar, 40], [BOS, bar, 41]]


def _guided(use_cache: bool, scale: float, ctx: int = 64) -> tuple[Engine, list[np.ndarray]]:
    m = debug_model(vocab_size=V.size, max_seq_len=ctx)
    config = SamplingConfig(greedy=True, guidance=scale, use_cache=use_cache)
    engine = Engine(m, V, config)
    prompts = [torch.as_tensor(plan_prompt(PLAN, V)), torch.tensor([BOS])]
    engine.add(prompts, 16, 300, [PLAN, None])
    run(engine)
    return engine, [engine.row(r).numpy() for r in range(2)]


def test_the_cached_twin_equals_the_recomputed_one_past_restarts():
    _, cached = _guided(True, 3.0)
    _, slow = _guided(False, 3.0)
    assert len(cached[0]) > 2 * 64  # past one context: the rows restarted
    for a, b in zip(cached, slow, strict=True):
        assert np.array_equal(a, b)
        assert TK.grammar.validate(a) is None


def test_the_twin_reads_the_row_without_its_controls():
    m = debug_model(vocab_size=V.size, max_seq_len=256)
    engine = Engine(m, V, SamplingConfig(temperature=1.2, guidance=2.0),
                    torch.Generator().manual_seed(3))  # fmt: skip
    engine.add([torch.as_tensor(plan_prompt(PLAN, V))], 3, 60, [PLAN])
    for _ in range(40):
        engine.step()
    ids = engine.row(0).numpy()
    assert (np.isin(V.types[ids], [int(T.DENSITY), int(T.CHORD)])).sum() >= 2
    bare = torch.as_tensor(drop_controls(ids, V, CONTROL_TYPES))[None]
    expect = m(bare)[0, -1].float()
    torch.testing.assert_close(engine.guide.logits[0], expect, atol=1e-4, rtol=1e-4)
    cond = m(torch.as_tensor(ids)[None])[0, -1].float()
    torch.testing.assert_close(engine.logits[0], cond, atol=1e-4, rtol=1e-4)


def test_guidance_mixes_the_two_predictions_only_where_a_plan_and_a_scale_are():
    guide = Guide(debug_model(vocab_size=V.size), V, True, "cpu")
    guide.logits = torch.tensor([[0.0, 1.0], [5.0, 5.0], [0.0, 0.0]])
    guide.scale = torch.tensor([2.5, 2.5, 1.0])
    cond = torch.tensor([[1.0, 3.0], [1.0, 2.0], [1.0, 2.0]])
    mixed = guide.mix(cond, torch.tensor([True, False, True]))
    assert mixed.tolist() == [[2.5, 6.0], [1.0, 2.0], [1.0, 2.0]]


def test_rows_of_different_scales_share_a_batch_and_join_it_later():
    m = debug_model(vocab_size=V.size, max_seq_len=256)
    prompt = torch.as_tensor(plan_prompt(PLAN, V))

    def alone(scale: float) -> np.ndarray:
        engine = Engine(m, V, SamplingConfig(greedy=True, guidance=scale))
        engine.add([prompt], 3, 80, [PLAN])
        run(engine)
        return engine.row(0).numpy()

    engine = Engine(m, V, SamplingConfig(greedy=True))
    engine.add([prompt], 3, 80, [PLAN])  # unguided: no twins yet
    for _ in range(5):
        engine.step()
    engine.add([prompt, prompt], 3, 80, [PLAN, PLAN], guidance=[3.0, 1.0])
    run(engine)
    assert np.array_equal(engine.row(1).numpy(), alone(3.0))
    assert np.array_equal(engine.row(2).numpy(), alone(1.0))
    assert np.array_equal(engine.row(0).numpy(), alone(1.0))
    assert not np.array_equal(alone(3.0), alone(1.0))


def test_guided_rows_that_end_early_leave_both_caches():
    m = debug_model(vocab_size=V.size, max_seq_len=256)
    prompts = [torch.as_tensor(plan_prompt(PLAN, V))] * 3
    engines = []
    for use_cache in (True, False):
        engine = Engine(m, V, SamplingConfig(greedy=True, guidance=2.0, use_cache=use_cache))
        engine.add(prompts, 16, [10, 20, 90], [PLAN] * 3)
        run(engine)
        engines.append(engine)
    assert torch.equal(engines[0].padded(), engines[1].padded())
    assert engines[0].cache.batch == engines[0].guide.cache.batch == 1


def test_a_bad_guidance_scale_is_refused():
    engine = Engine(debug_model(vocab_size=V.size), V, SamplingConfig(guidance=0.0))
    with pytest.raises(ValueError, match="guidance must be above 0"):
        engine.add([torch.tensor([BOS])], 2, 10, [PLAN])


def test_the_cli_guides_learned_controls_by_default():
    from aurl.generate.control_names import ControlRequest
    from aurl.generate.guidance_default import DEFAULT_GUIDANCE, guidance_for

    assert guidance_for(None, None) == 1.0
    assert guidance_for(None, ControlRequest(style="bach", tempo=90)) == 1.0
    assert guidance_for(None, ControlRequest(key="D minor")) == DEFAULT_GUIDANCE
    assert guidance_for(1.5, ControlRequest(chords="I V")) == 1.5
    assert guidance_for(None, ControlRequest(key="D minor"), steer=2.0) == 1.0  # steered


def test_the_cli_steers_chords_key_and_density_by_default():
    from aurl.generate.control_names import ControlRequest
    from aurl.generate.guidance_default import DEFAULT_STEER, steer_for

    assert steer_for(None, None) == 0.0
    assert steer_for(None, ControlRequest(style="bach", tempo=90)) == 0.0
    assert steer_for(None, ControlRequest(register="3")) == DEFAULT_STEER
    assert steer_for(None, ControlRequest(chords="I V")) == DEFAULT_STEER > 0
    assert steer_for(0.0, ControlRequest(key="D minor")) == 0.0
    assert steer_for(None, None, filling=True) == DEFAULT_STEER  # voice leading
