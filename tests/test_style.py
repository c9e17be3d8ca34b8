"""The style classifier and the control measures of ``aurl evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aurl.cli import main
from aurl.evaluate.notes import ids_to_notes
from aurl.evaluate.style import fit_styles, style_vector
from aurl.midi import read_midi
from aurl.tokens import Tokenizer


def test_the_classifier_learns_corpora_that_differ_and_weighs_them_the_same():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (300, 5))
    b = rng.normal(0, 1, (30, 5)) + [2, 0, 0, 0, 0]  # ten times fewer pieces
    x, labels = np.concatenate([a, b]), ["a"] * 300 + ["b"] * 30
    clf = fit_styles(x, labels)
    test_a, test_b = rng.normal(0, 1, (200, 5)), rng.normal(0, 1, (200, 5)) + [2, 0, 0, 0, 0]
    assert clf.accuracy(test_a, ["a"] * 200) > 0.75 and clf.accuracy(test_b, ["b"] * 200) > 0.75
    noise = rng.normal(0, 1, (200, 5))
    assert clf.accuracy(noise, ["b"] * 200) < 0.5  # pieces like a's are not called b
    with pytest.raises(ValueError, match="two corpora"):
        fit_styles(a, ["a"] * 300)


def test_style_features_ignore_the_key(bach_source):
    tk = Tokenizer()
    score = read_midi(bach_source.files[0])
    up = score.copy()
    for track in up.tracks:
        for note in track.notes:
            note.pitch += 5
    a, b = (style_vector(ids_to_notes(tk.encode(s), tk.vocab)) for s in (score, up))
    assert np.isfinite(a).all() and np.allclose(a, b)


def test_evaluate_measures_adherence_of_a_model_with_controls(feature_run, tmp_path):
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(feature_run), "--num", "2", "--bars", "2",
                 "--controls", "4", "--no-plots", "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    adherence = report["controls"]["adherence"]
    assert adherence["pieces"] == 4 and "key" in adherence["asked"]
    assert "## Control adherence" in (out / "report.md").read_text()


def test_evaluate_refuses_controls_for_a_model_without_them(tiny_run, tmp_path, capsys):
    code = main(["evaluate", "--model", str(tiny_run), "--num", "2", "--bars", "2",
                 "--controls", "4", "--no-plots", "--quiet", "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 2 and "need a model trained with controls" in capsys.readouterr().err
