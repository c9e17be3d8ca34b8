"""Hyperparameter search: a 3-trial study through the CLI, continued to 4; the pruning
decision; the one-line errors of a bad search space."""

from __future__ import annotations

import csv
from pathlib import Path

import optuna
import pytest
import yaml

from aurl.cli import main
from aurl.train.config import ParamSpace
from aurl.train.tune import open_study, pruning_callback, suggest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST = ["train.max_steps=6", "train.eval_every=2", "train.eval_windows=2",
        "train.tensorboard=false", "train.checkpoint_every=6"]  # fmt: skip


def _rows(study_dir: Path) -> list[dict]:
    with open(study_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_study_runs_writes_tables_and_continues(small_corpus, tmp_path, capsys):
    from aurl.models import load_model

    args = ["tune", "--config", str(CONFIGS / "tune-tiny.yaml"), "--runs-dir", str(tmp_path),
            "--quiet", f"data.source={small_corpus}", *FAST]  # fmt: skip
    assert main([*args, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    study_dir = tmp_path / "tune-tiny-tune"
    rows = _rows(study_dir)
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    assert len({(r["train.lr"], r["model.n_embd"]) for r in rows}) == 3
    assert sum(line.startswith("trial ") for line in out.splitlines()) == 3
    best_line = next(line for line in out.splitlines() if line.startswith("best: trial"))
    best = min((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["val_loss"]))
    model_dir = study_dir / f"trial-{int(best['number']):03d}" / "model"
    assert str(model_dir) in best_line
    assert load_model(model_dir).meta["metrics"]["val_nll_per_token"] == pytest.approx(
        float(best["val_loss"])
    )
    table = (study_dir / "trials.md").read_text()
    assert "| number | state | train.lr | model.n_embd | val_loss | steps |" in table

    assert main([*args, "--trials", "4"]) == 0  # continues the stored study
    out = capsys.readouterr().out
    assert sum(line.startswith("trial ") for line in out.splitlines()) == 1
    rows = _rows(study_dir)
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert len({(r["train.lr"], r["model.n_embd"]) for r in rows}) == 4


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("aurl: error:")
    for needle in needles:
        assert needle in err


def test_empty_space_is_one_line_error(tmp_path, capsys):
    config = str(CONFIGS / "tiny.yaml")
    assert main(["tune", "--config", config, "--runs-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, config, "tune.space is empty: nothing to search")


def test_unknown_space_key_is_one_line_error(tmp_path, capsys):
    tree = yaml.safe_load((CONFIGS / "tune-tiny.yaml").read_text())
    tree["tune"]["space"]["train.lrr"] = {"low": 0.1, "high": 0.2}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["tune", "--config", str(path), "--runs-dir", str(tmp_path)]) == 2
    _one_line_error(capsys, "tune.space.train.lrr", "no such setting", "train.lr")
    assert not (tmp_path / "tune-tiny-tune").exists()


def test_trial_behind_the_median_is_pruned_after_warmup(tmp_path):
    study = open_study(tmp_path, "s", seed=0, startup_trials=1, warmup_steps=4)
    first = study.ask()
    for step, loss in ((2, 3.0), (4, 2.0), (6, 1.0)):
        first.report(loss, step)
    study.tell(first, 1.0)

    worse = pruning_callback(study.ask())
    worse(2, {"val_loss": 9.0})  # before the warm-up ends: never pruned
    with pytest.raises(optuna.TrialPruned):
        worse(4, {"val_loss": 9.0})
    better = pruning_callback(study.ask())
    better(4, {"val_loss": 1.5})
    assert (tmp_path / "study.db").is_file()


def test_suggest_draws_each_kind_of_space(tmp_path):
    study = open_study(tmp_path, "s", seed=0, startup_trials=0, warmup_steps=0)
    space = {
        "model.n_layer": ParamSpace(low=2, high=6, integer=True),
        "train.weight_decay": ParamSpace(low=0.0, high=0.2, step=0.05),
        "train.lr": ParamSpace(low=1e-4, high=1e-2, log=True),
        "model.n_embd": ParamSpace(choices=[16, 32]),
    }
    values = suggest(study.ask(), space)
    assert isinstance(values["model.n_layer"], int) and 2 <= values["model.n_layer"] <= 6
    assert round(values["train.weight_decay"] / 0.05, 6).is_integer()
    assert 1e-4 <= values["train.lr"] <= 1e-2
    assert values["model.n_embd"] in (16, 32)
