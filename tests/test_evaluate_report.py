"""`aurl evaluate` end to end: the report folder, its JSON, determinism and errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aurl.evaluate.command import evaluate

FIGURES = ("features.png", "distances.png", "oa.png", "pianorolls.png")


@pytest.fixture(scope="module")
def two_folders(small_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """Two disjoint folders of chorales."""
    root = tmp_path_factory.mktemp("sets")
    files = sorted(small_corpus.glob("*.mid"))
    for name, chosen in (("a", files[:8]), ("b", files[8:20])):
        (root / name).mkdir()
        for path in chosen:
            (root / name / path.name).write_bytes(path.read_bytes())
    (root / "a" / "broken.mid").write_bytes(b"not a midi file")
    return root / "a", root / "b"


def _run(args: list[str]):
    result = CliRunner().invoke(evaluate, args, catch_exceptions=True)
    return result


def _without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timing"}


def test_files_report_folder(two_folders, tmp_path):
    a, b = two_folders
    out = tmp_path / "report"
    result = _run(["--files", str(a), "--reference", str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("report.json", "report.md", *FIGURES):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "files"
    assert report["sets"]["generated"]["pieces"] == 8
    assert report["sets"]["generated"]["skipped"][0]["file"] == "broken.mid"
    assert report["sets"]["reference"]["pieces"] == 12
    assert len(report["pieces"]["generated"]) == 8
    oa = report["features"]["scale_consistency"]["oa"]
    assert 0 < oa <= 1
    assert report["features"]["drum_pattern_consistency"]["oa"] is None  # chorales have no drums
    text = (out / "report.md").read_text()
    assert "| scale_consistency |" in text and "## Memorization" in text
    # A second run replaces the report folder whole.
    again = _run(["--files", str(a), "--reference", str(a), "--out", str(out), "--no-plots"])
    assert again.exit_code == 0, again.output
    assert not (out / "oa.png").exists()
    same = json.loads((out / "report.json").read_text())
    assert same["overall"]["mean_oa"] > 0.85  # a set against itself
    assert same["memorization"]["summary"]["flagged"] == 8  # every file is in the reference


def test_model_report_is_deterministic(tiny_run, tmp_path):
    from aurl.models import load_model

    args = [
        "--model",
        str(tiny_run / "model"),
        "--num",
        "4",
        "--bars",
        "2",
        "--seed",
        "7",
        "--quiet",
        "--device",
        "cpu",
    ]
    first = _run([*args, "--out", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    out = tmp_path / "one"
    for name in ("report.json", "report.md", *FIGURES):
        assert (out / name).is_file(), name
    assert len(list((out / "samples").glob("*.mid"))) == 4
    report = json.loads((out / "report.json").read_text())
    lk = report["likelihood"]
    assert lk["model"]["tokens"] == lk["ngram"]["tokens"] > 0
    assert lk["ngram"]["nll_per_token"] < lk["uniform"]["nll_per_token"]
    assert report["validity"]["samples"] == 4
    assert len(report["memorization"]["longest_notes"]) == 4
    assert report["model"]["dataset_matches_training"] is True
    trained = load_model(tiny_run / "model").meta["metrics"]  # what `aurl train` reported
    assert lk["model"]["nll_per_token"] == pytest.approx(trained["test_nll_per_token"], abs=1e-5)
    assert lk["model"]["tokens"] == trained["test_tokens"]
    second = _run([*args, "--out", str(tmp_path / "two"), "--no-plots"])
    assert second.exit_code == 0, second.output
    again = json.loads((tmp_path / "two" / "report.json").read_text())
    assert _without_timing(again) | {"figures": []} == _without_timing(report) | {"figures": []}


def test_single_files_give_a_report_without_comparisons(two_folders, tmp_path):
    a, b = two_folders
    one, other = tmp_path / "one", tmp_path / "other"
    for folder, source in ((one, a), (other, b)):
        folder.mkdir()
        first = sorted(source.glob("bwv*.mid"))[0]
        (folder / first.name).write_bytes(first.read_bytes())
    result = _run(["--files", str(one), "--reference", str(other), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "mean OA n/a" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["features"]["pitch_range"]["oa"] is None
    assert report["features"]["pitch_range"]["generated"]["pieces"] == 1


def test_errors(two_folders, tmp_path):
    a, _ = two_folders
    result = _run(["--files", str(a)])
    assert isinstance(result.exception, ValueError) and "--reference" in str(result.exception)
    result = _run(["--files", str(tmp_path / "nope"), "--reference", str(a)])
    assert isinstance(result.exception, FileNotFoundError)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(["--files", str(empty), "--reference", str(a)])
    assert isinstance(result.exception, ValueError)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = _run(["--files", str(a), "--reference", str(a), "--out", str(taken)])
    assert isinstance(result.exception, ValueError) and (taken / "keep.txt").exists()


def test_imports_stay_light_and_never_reach_training():
    code = (
        "import sys\n"
        "import aurl.evaluate.command\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
        "import aurl.evaluate.run, aurl.evaluate.samples, aurl.evaluate.report, "
        "aurl.evaluate.plots, aurl.evaluate.likelihood\n"
        "assert not [m for m in sys.modules if m.startswith('aurl.train')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unfinished_samples_continue_from_where_they_stopped(tiny_run):
    import torch

    from aurl.evaluate.samples import TokenBudget, draw
    from aurl.generate.sampler import SamplingConfig
    from aurl.models import load_model

    folder, cpu = load_model(tiny_run / "model"), torch.device("cpu")
    config = SamplingConfig()
    short, _, _ = draw(folder, cpu, 6, 2, config, seed=3, budget=TokenBudget(24, 24), batch=6)
    long, tokens, _ = draw(folder, cpu, 6, 2, config, seed=3, budget=TokenBudget(24, 90), batch=6)
    assert tokens == sum(len(s.ids) - 1 for s in long)
    assert any(s.truncated for s in short)  # the untrained model rarely ends in 23 tokens
    for a, b in zip(short, long, strict=True):
        assert len(b.ids) <= 90
        if a.truncated:
            assert len(b.ids) > len(a.ids) and (b.ids[: len(a.ids)] == a.ids).all()
            assert b.truncated == (len(b.ids) == 90)
        else:
            assert (a.ids == b.ids).all()
