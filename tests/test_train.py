"""Training: the loss falls, the model folder is exported, and a killed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aurl.config import ConfigError, load_config
from aurl.models import load_model
from aurl.train import lm
from aurl.train.schedule import lr_at

TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_exports(tiny_run):
    records = metrics(tiny_run)
    losses = [r["loss"] for r in records if "loss" in r]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert vals[-1] < vals[0]
    folder = load_model(tiny_run / "model")
    meta = folder.meta
    assert meta["training"]["steps"] > 0 and meta["parameters"] == folder.model.num_params()
    assert {"val_nll_per_token", "test_nll_per_token"} <= set(meta["metrics"])
    assert (tiny_run / "config.yaml").is_file()


def test_resume_continues_the_same_curve(small_corpus, tmp_path, monkeypatch):
    config = load_config(TINY, [f"data.source={small_corpus}", "train.max_steps=20",
                                "train.checkpoint_every=10", "train.eval_every=10", "model.dropout=0.1"])  # fmt: skip
    straight = tmp_path / "straight"
    lm.train_run(config, straight, progress=False)

    killed = tmp_path / "killed"
    real_call = lm.BatchFeed.__call__

    def dies_at_step_13(self, step, micro=0):
        if step == 13:
            raise KeyboardInterrupt  # as if the process were killed after the step-10 checkpoint
        return real_call(self, step, micro)

    monkeypatch.setattr(lm.BatchFeed, "__call__", dies_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        lm.train_run(config, killed, progress=False)
    monkeypatch.setattr(lm.BatchFeed, "__call__", real_call)
    with pytest.raises(ConfigError, match="already there"):
        lm.train_run(config, killed, progress=False)
    lm.train_run(config, killed, resume=True, progress=False)

    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # no duplicated lines after resume
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "val_loss"):
            if key in ra:
                assert ra[key] == pytest.approx(rb[key], abs=1e-5), (ra, rb)
    wa = load_model(straight / "model").model.state_dict()
    wb = load_model(killed / "model").model.state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        lm.train_run(load_config(TINY), tmp_path / "none", resume=True, progress=False)


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 1.0, 0.1, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(TINY, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"model\.nope"):
        load_config(TINY, ["model.nope=3"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(TINY, ["train.lr"])
