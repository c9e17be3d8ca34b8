"""The ``analyze`` command: reports, JSON and plots for files and folders, and its errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from aurl.analysis.command import analyze
from aurl.midi import MidiError
from test_analysis_helpers import aaba_piece, cadence, chord_piece, piece_to_midi


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    piece_to_midi(aaba_piece(), src / "aaba.mid")
    piece_to_midi(chord_piece(cadence(7, "major") * 4), src / "sub" / "cadence.mid")
    (src / "broken.mid").write_bytes(b"MThd\x00\x00")
    return src


def test_folder_writes_every_report_and_skips_a_bad_file(folder, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(analyze, [str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "aaba.json",
            "aaba.chords.png",
            "aaba.similarity.png",
            "sub-cadence.json",
            "sub-cadence.chords.png",
            "sub-cadence.similarity.png",
            "corpus.json",
        ]
    )
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    piece = json.loads((out / "aaba.json").read_text())
    assert set(piece) >= {"piece", "source", "meter", "key", "harmony", "structure", "melody"}
    assert piece["structure"]["form"] == "AABA"
    cad = json.loads((out / "sub-cadence.json").read_text())
    assert cad["key"]["global"]["name"] == "G major"
    assert any(c["type"].endswith("authentic") for c in cad["harmony"]["cadences"])
    corpus = json.loads((out / "corpus.json").read_text())
    assert corpus["pieces"] == 2
    assert corpus["keys"] == {"C major": 1, "G major": 1}
    assert [s["file"].endswith("broken.mid") for s in corpus["skipped"]] == [True]
    assert len(corpus["chord_transitions"]["counts"]) == len(corpus["chord_transitions"]["labels"])
    assert "skipped" in result.output and "broken.mid" in result.output
    assert "key       C major" in result.output and "corpus: 2 pieces" in result.output


def test_single_file_without_plots_quietly(folder, tmp_path):
    out = tmp_path / "out"
    args = [str(folder / "aaba.mid"), "--out", str(out), "--no-plots", "--quiet"]
    result = CliRunner().invoke(analyze, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["aaba.json"]
    assert "key " not in result.output and "analysed 1 file" in result.output


def test_parallel_workers_give_the_same_reports(folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for out, workers in ((one, "1"), (two, "2")):
        args = [str(folder), "--out", str(out), "--no-plots", "--quiet", "--workers", workers]
        assert CliRunner().invoke(analyze, args).exit_code == 0
    for name in ("aaba.json", "sub-cadence.json", "corpus.json"):
        assert (one / name).read_text() == (two / name).read_text()


def test_errors_stop_with_the_expected_exceptions(folder, tmp_path):
    runner = CliRunner()
    bad = runner.invoke(analyze, [str(folder / "broken.mid"), "--out", str(tmp_path / "o")])
    assert isinstance(bad.exception, MidiError)
    missing = runner.invoke(analyze, [str(tmp_path / "nope.mid")])
    assert isinstance(missing.exception, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(analyze, [str(tmp_path / "empty")])
    assert isinstance(empty.exception, ValueError) and "no .mid" in str(empty.exception)
    assert runner.invoke(analyze, []).exit_code == 2  # usage error from click


def test_importing_the_command_loads_no_heavy_modules():
    import subprocess
    import sys

    code = (
        "import sys; from aurl.analysis.command import analyze; "
        "print(sorted(m for m in ('numpy', 'matplotlib', 'symusic', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
