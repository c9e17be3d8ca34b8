"""The training feed: windows from the memmaps, loader workers, curriculum, weighted corpora."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from aurl.config import load_config
from aurl.data.augment import transpose, transpose_range
from aurl.data.config import AugmentConfig, CurriculumConfig
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import folder_source
from aurl.data.windows import WeightedWindows, WindowDataset, seq_len_at
from aurl.errors import ConfigError
from aurl.tokens import PAD, Tokenizer
from aurl.train import lm

TK = Tokenizer()
V = TK.vocab
TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"
ALL_ON = AugmentConfig.model_validate({
    "tempo": {"p": 0.5}, "velocity": {"p": 0.5}, "instruments": {"p": 0.5},
    "humanize": {"p": 0.5, "swing_steps": 2},
})  # fmt: skip
CURRICULUM = CurriculumConfig(start_len=16, at_steps=[2, 4])


@pytest.fixture(scope="module")
def shard(small_corpus) -> Shard:
    # In the session's cache folder, where training on the same corpus finds it.
    return Shard(prepare(folder_source(small_corpus), TK, workers=1, progress=False).split("train"))


def augmented(shard: Shard, **kw) -> WindowDataset:
    return WindowDataset(shard, V, 64, seed=3, transpose=6, augment=ALL_ON, batch_size=4,
                         curriculum=CURRICULUM, **kw)  # fmt: skip


def batches(feed: lm.BatchFeed, steps: range) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [feed(s) for s in steps]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b, strict=True)
    )


def test_default_windows_draw_what_they_always_drew(shard):
    """Transposition only, always on: the start and the shift come from default_rng((seed, i))
    in that order, so existing runs see the same data."""
    windows = WindowDataset(shard, V, 64, seed=9, transpose=6, batch_size=16)
    for i in range(50):
        rng = np.random.default_rng((9, i))
        j = min(int(np.searchsorted(windows.cdf, rng.random(), side="right")), len(windows.cdf) - 1)
        start = int(windows.starts[j])
        stored = np.asarray(shard.tokens[start : min(int(windows.ends[j]), start + 65)], np.int64)
        lo, hi = transpose_range(stored, V, 6)
        expected = np.full(65, PAD)
        expected[: len(stored)] = transpose(stored, V, int(rng.integers(lo, hi + 1)))
        x, y = windows[i]
        assert np.array_equal(x.numpy(), expected[:-1]) and np.array_equal(y.numpy(), expected[1:])


def test_curriculum_doubles_the_length_at_its_steps(shard):
    assert [seq_len_at(s, 64, CURRICULUM) for s in range(6)] == [16, 16, 32, 32, 64, 64]
    assert seq_len_at(0, 64, None) == seq_len_at(0, 64, CurriculumConfig()) == 64
    feed = lm.BatchFeed(augmented(shard), batch_size=4, workers=0)
    shapes = [tuple(feed(s)[0].shape) for s in range(6)]
    assert shapes == [(4, 16), (4, 16), (4, 32), (4, 32), (4, 64), (4, 64)]
    x, y = feed(0)
    assert torch.equal(x[:, 1:], y[:, :-1]) and (x != PAD).any()


def test_loader_workers_give_the_same_batches_and_resume_exactly(shard):
    windows = augmented(shard)
    steps = range(0, 6)
    reference = batches(lm.BatchFeed(windows, 4, workers=0), steps)
    assert same(batches(lm.BatchFeed(windows, 4, workers=2, context="fork"), steps), reference)
    # A resumed run builds a new dataset and feed and starts at its checkpoint's step.
    resumed = lm.BatchFeed(augmented(shard), 4, workers=2, context="fork")
    assert same(batches(resumed, range(3, 6)), reference[3:])
    assert not same(batches(lm.BatchFeed(windows, 4, workers=0), range(1, 7)), reference)


def test_spawned_workers_reopen_the_memmap(shard):
    windows = augmented(shard)
    blob = pickle.dumps(windows)
    assert np.asarray(shard.tokens[100:400]).tobytes() not in blob  # the tokens are not copied
    copy = pickle.loads(blob)
    assert isinstance(copy.shard.tokens, np.memmap)
    assert all(torch.equal(copy[i][0], windows[i][0]) for i in range(20))
    steps = range(2)
    spawned = batches(lm.BatchFeed(windows, 4, workers=1, context="spawn"), steps)
    assert same(spawned, batches(lm.BatchFeed(windows, 4, workers=0), steps))


def test_weighted_windows_follow_the_weights(shard):
    a = WindowDataset(shard, V, 32, seed=1, transpose=0)
    b = WindowDataset(shard, V, 32, seed=1, transpose=6)
    mixed = WeightedWindows([a, b], [3.0, 1.0], seed=5)
    picks = np.array([mixed.source_of(i) for i in range(4000)])
    assert 0.72 < (picks == 0).mean() < 0.78
    for i in range(40):
        assert torch.equal(mixed[i][0], (a, b)[picks[i]][i][0])
    again = WeightedWindows([a, b], [3.0, 1.0], seed=5)
    assert [again.source_of(i) for i in range(200)] == picks[:200].tolist()
    with pytest.raises(ValueError, match="positive"):
        WeightedWindows([a, b], [1.0, 0.0])


def test_data_config_sources_curriculum_and_errors():
    single = load_config(TINY, ["data.source=/some/folder"]).data
    assert [(s.source, s.weight) for s in single.weighted_sources()] == [("/some/folder", 1.0)]
    both = load_config(None, ["data.sources=[{source: bach, weight: 2}, {source: /midi}]"]).data
    assert both.source == "bach" and [s.weight for s in both.weighted_sources()] == [2.0, 1.0]
    preset = load_config(TINY, ["data.sources=[{source: a}, {source: b, weight: 0.5}]"]).data
    assert preset.source == "a"  # sources take precedence over the preset's source
    assert load_config(TINY).data.augment == AugmentConfig()  # transposition only
    bad = {
        r"data\.augment\.tempo\.p": ["data.augment.tempo.p=1.5"],
        r"data\.augment\.humanize\.schedule\.end": [
            "data.augment.humanize.schedule.kind=ramp", "data.augment.humanize.schedule.start=9"],
        r"data\.curriculum": ["data.curriculum.start_len=8"],
        r"data\.curriculum\.at_steps": ["data.curriculum.at_steps=[5, 2]"],
        r"data\.sources\.0\.weight": ["data.sources=[{source: a, weight: 0}]"],
        r"data\.sources\.1\.source": ["data.sources=[{source: a}, {weight: 2}]"],
        r"data\.augment\.velocity\.colour": ["data.augment.velocity.colour=1"],
    }  # fmt: skip
    for field, overrides in bad.items():
        with pytest.raises(ConfigError, match=field):
            load_config(TINY, overrides)


def test_training_on_two_weighted_corpora_with_augmentation(small_corpus, shard, tmp_path):
    config = load_config(TINY, [
        f"data.sources=[{{source: {small_corpus}, weight: 1}}, {{source: {small_corpus}}}]",
        "data.curriculum.start_len=32", "data.curriculum.at_steps=[2]", "data.loader_workers=1",
        "data.augment.velocity.p=1", "data.augment.humanize.p=0.5", "train.max_steps=4",
        "train.eval_every=4", "train.log_every=1", "train.eval_windows=2",
    ])  # fmt: skip
    mixed = lm.training_windows(config, V, [shard, shard])
    assert isinstance(mixed, WeightedWindows) and mixed.datasets[1].augment.velocity.p == 1
    assert mixed[5][0].shape == (32,) and mixed[2 * 4][0].shape == (64,)  # batch 4, step 2
    single = lm.training_windows(load_config(TINY), V, [shard])
    assert isinstance(single, WindowDataset) and single.transpose == 3
    run = tmp_path / "run"
    meta = lm.train_run(config, run, progress=False)
    assert meta["training"]["total_steps"] == 4
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4]
    assert load_config(run / "config.yaml").data == config.data  # saved and reloaded as is
