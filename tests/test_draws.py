"""Draws with settings per row: filters per row equal the scalar filters row by row, and a
row draws the same whether it is alone or shares a batch."""

from __future__ import annotations

import pytest
import torch

from aurl.generate import filters
from aurl.generate.draws import RowDraws, RowSampling, nucleus, top_k_rows, uniform
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.tokens import BOS, PAD, Tokenizer
from factories import debug_model

TK = Tokenizer()


def test_filters_per_row_equal_the_scalar_filters_row_by_row():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    ks, ps = [0, 1, 7, 50], [1.0, 0.3, 0.9, 0.05]
    by_k = top_k_rows(logits, torch.tensor(ks))
    by_p = nucleus(logits, torch.tensor(ps))
    for r in range(4):
        assert torch.equal(by_k[r], filters.top_k(logits[r : r + 1], ks[r])[0])
        assert torch.equal(by_p[r], filters.top_p_sorted(logits[r : r + 1], ps[r])[0])


def test_the_numbers_of_a_row_depend_on_its_seed_and_position_alone():
    u = uniform(torch.tensor([7, 7, 8]), torch.tensor([3, 4, 3]), 300)
    alone = uniform(torch.tensor([7]), torch.tensor([3]), 300)
    assert torch.equal(u[0], alone[0])
    assert not torch.equal(u[0], u[1]) and not torch.equal(u[0], u[2])
    assert float(u.min()) > 0 and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.05


def test_draws_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).repeat(4000, 1)
    draws = RowDraws([RowSampling(seed=s) for s in range(4000)])
    counts = torch.bincount(draws.draw(logits, torch.zeros(4000, dtype=torch.long)), minlength=3)
    assert torch.allclose(counts / 4000.0, torch.tensor([0.6, 0.3, 0.1]), atol=0.03)


def test_temperature_zero_is_greedy_and_bad_settings_are_refused():
    logits = torch.randn(2, 30)
    draws = RowDraws([RowSampling(temperature=0.0, seed=1), RowSampling(0.0, seed=2)])
    assert torch.equal(draws.draw(logits, torch.tensor([0, 5])), logits.argmax(-1))
    for bad in ({"temperature": -1}, {"top_k": -2}, {"top_p": 0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RowSampling(**bad)


def test_a_seeded_row_gets_the_same_piece_alone_and_beside_others():
    m = debug_model()
    mine = RowSampling(temperature=0.9, top_k=20, seed=11)
    alone = Engine(m, TK.vocab, SamplingConfig())
    (row,) = alone.add([torch.tensor([BOS])], 3, 120, samplings=[mine])
    run(alone)
    shared = Engine(m, TK.vocab, SamplingConfig())
    shared.add([torch.tensor([BOS])] * 2, 2, 60,
               samplings=[RowSampling(1.3, 0, 0.8, seed=1), RowSampling(seed=2)])  # fmt: skip
    for _ in range(7):
        shared.step()
    (joined,) = shared.add([torch.tensor([BOS])], 3, 120, samplings=[mine])
    run(shared)
    assert torch.equal(shared.row(joined), alone.row(row))
    other = Engine(m, TK.vocab, SamplingConfig())
    other.add([torch.tensor([BOS])], 3, 120, samplings=[RowSampling(0.9, 20, seed=12)])
    run(other)
    assert not torch.equal(other.row(0), alone.row(row))


def test_a_dropped_row_stops_and_frees_its_slot():
    m = debug_model()
    engine = Engine(m, TK.vocab, SamplingConfig())
    rows = engine.add([torch.tensor([BOS])] * 2, 4, 200, samplings=[RowSampling(seed=3)] * 2)
    engine.step()
    engine.drop([rows[0]])
    before = int(engine.length[rows[0]])
    engine.step()
    assert int(engine.length[rows[0]]) == before and engine.tokens[rows[0]] == PAD
    assert engine.add([torch.tensor([BOS])], 2, 10, samplings=[RowSampling(seed=4)]) == [rows[0]]
