"""The aurl command end to end, as a user runs it: help, prepare, generate, and errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import symusic

from aurl.cli import main
from aurl.paths import SHIPPED_MODEL

AURL = str(Path(sys.executable).parent / "aurl")
TINY = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [AURL, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize("command", [[], ["prepare"], ["train"], ["generate"]])
def test_help_explains_every_option(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    if command == ["generate"]:
        for option in ("--bars", "--temperature", "--top-k", "--top-p", "--seed", "--num",
                       "--prompt", "--prompt-bars", "--out", "--model", "--no-grammar"):  # fmt: skip
            assert option in result.stdout


def test_generate_writes_readable_midi(tiny_run, tmp_path):
    result = run("generate", "--model", str(tiny_run), "--bars", "2", "--num", "2", "--seed", "3",
                 "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "out").glob("*.mid"))
    assert len(files) == 2
    for f in files:
        assert symusic.Score(str(f)).note_num() > 0
    assert "tokens/s" in result.stdout and result.stdout.count("wrote") == 2


def test_a_piece_that_ends_short_of_its_bars_says_so(tiny_run, tmp_path, monkeypatch, capsys):
    import aurl.api

    monkeypatch.setattr(aurl.api, "TOKENS_PER_BAR_LIMIT", 3)  # far too few tokens for a bar
    assert main(["generate", "--model", str(tiny_run), "--bars", "4", "--seed", "1", "--out",
                 str(tmp_path)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "of 4 bars (ended short" in out
    assert len(list(tmp_path.glob("*.mid"))) == 1  # what was made is still written
    from aurl.api import load

    piece = load(tiny_run).generate(bars=4, seed=1).pieces[0]
    assert piece.short and piece.asked_bars == 4 and piece.bars < 4  # the API says so too


def test_stream_writes_a_valid_file_after_every_bar(tiny_run, tmp_path, monkeypatch, capsys):
    import aurl.cli
    from aurl.midi import write_midi

    seen = []

    def spy(score, path):  # the file on disk after each bar
        write_midi(score, path)
        seen.append(symusic.Score(str(path)).note_num())

    monkeypatch.setattr(aurl.cli, "_write", spy)
    args = ["generate", "--bars", "3", "--seed", "4"]  # the shipped model closes its bars
    assert main([*args, "--stream", "--out", str(tmp_path / "s")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["bar 1/3", "bar 2/3", "bar 3/3"]
    assert "x real time" in lines[0] and len(seen) == 3 and seen == sorted(seen)
    assert main([*args, "--out", str(tmp_path / "b")]) == 0  # the same seed without streaming
    (a,), (b,) = (tmp_path / "s").glob("*.mid"), (tmp_path / "b").glob("*.mid")
    assert a.read_bytes() == b.read_bytes()


def test_beams_and_best_of_write_valid_music(tiny_run, tmp_path):
    from aurl.tokens import Tokenizer

    tk = Tokenizer()
    for option in (["--beams", "3"], ["--best-of", "3", "--num", "2"]):
        out = tmp_path / option[0]
        assert main(["generate", "--model", str(tiny_run), "--bars", "2", "--seed", "2", *option,
                     "--out", str(out)]) == 0  # fmt: skip
        for f in out.glob("*.mid"):
            assert tk.grammar.validate(tk.encode(symusic.Score(str(f)))) is None
    assert main(["generate", "--model", str(tiny_run), "--beams", "2", "--num", "2"]) == 2


def test_shipped_model_generates(tmp_path):
    assert (SHIPPED_MODEL / "config.json").is_file(), "the shipped model is missing"
    result = run("generate", "--bars", "4", "--seed", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (midi,) = tmp_path.glob("*.mid")
    score = symusic.Score(str(midi))
    assert score.note_num() > 10
    assert "4 bars" in result.stdout


def test_prompt_is_continued(tiny_run, bach_source, tmp_path):
    prompt = bach_source.files[5]
    result = run("generate", "--model", str(tiny_run), "--prompt", str(prompt), "--prompt-bars", "2",
                 "--bars", "2", "--seed", "1", "--out", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    (midi,) = tmp_path.glob("*.mid")
    from aurl.tokens import Tokenizer, TokenType

    tk = Tokenizer()

    ids = tk.encode(symusic.Score(str(prompt)))
    bars = (tk.vocab.types[ids] == TokenType.BAR).nonzero()[0]
    prompt_part = tk.decode(ids[: bars[2]])  # the first two bars, on the grid

    def notes(score):
        return {(n.time, n.duration, n.pitch) for t in score.tracks for n in t.notes}

    assert notes(prompt_part) and notes(prompt_part) <= notes(symusic.Score(str(midi)))
    assert "wrote" in result.stdout


def test_prepare_a_folder_then_cached(small_corpus):
    first = run("prepare", str(small_corpus), "--quiet")
    assert first.returncode == 0, first.stderr
    assert "40 files read" in first.stdout and "splits: train" in first.stdout
    second = run("prepare", str(small_corpus), "--quiet")
    assert "(cached)" in second.stdout


def one_line_error(code: int, capsys, *needles: str) -> None:
    """The CLI, called in-process, failed with exit code 2 and one line naming the needles."""
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aurl: error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_errors_are_one_line_with_exit_code_2(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x40\x00\x90")
    model = ["--model", str(tiny_run)]
    missing = str(tmp_path / "missing.mid")
    one_line_error(main(["generate", *model, "--prompt", missing]), capsys, "missing.mid",
                   "not found")  # fmt: skip
    one_line_error(main(["generate", *model, "--prompt", str(corrupt)]), capsys, "corrupt.mid",
                   "truncated")  # fmt: skip
    one_line_error(main(["generate", "--bars", "0"]), capsys, "--bars", "0")
    one_line_error(main(["generate", "--temperature", "-1"]), capsys, "--temperature")
    one_line_error(main(["generate", "--seed", str(2**64)]), capsys, "--seed")
    one_line_error(main(["generate", "--model", str(tmp_path / "nomodel")]), capsys, "nomodel")
    one_line_error(main(["train", "--config", TINY, "train.lr=-1"]), capsys,
                   "override train.lr=-1")  # fmt: skip
    one_line_error(main(["train", "--config", TINY, "model.n_layr=3"]), capsys,
                   "model.n_layr=3", "did you mean model.n_layer?")  # fmt: skip
    one_line_error(main(["train", "--config", str(tmp_path / "none.yaml")]), capsys, "none.yaml")
    one_line_error(main(["generate", "--no-such-option"]), capsys, "--no-such-option")
    one_line_error(main(["prepare", str(tmp_path / "nowhere")]), capsys, "nowhere")
    one_line_error(main(["finetune", str(tmp_path / "nowhere"), "--model", str(tiny_run)]),
                   capsys, "nowhere")  # fmt: skip
    assert not list(tmp_path.glob("outputs")) and not list(tmp_path.glob("runs"))


def test_the_cli_starts_as_a_module_for_torchrun():
    result = subprocess.run([sys.executable, "-m", "aurl", "--version"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "aurl" in result.stdout


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's first Python example, as written, against the shipped model."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    assert len(list((tmp_path / "outputs").glob("api-*.mid"))) == 2
