"""Audio rendering: a built Score to WAV with the General MIDI SoundFont, and its commands.

The piece: 4 bars of 4/4, a piano and a drum kit, bar 2 a rest in both, and the tempo
falling from 120 to 60 at bar 3, so it lasts 2 + 2 + 4 + 4 = 12 s (8 s if the tempo change
were ignored). A WAV counts as the right length when it lasts from the MIDI's seconds to
5% more, plus the release tail: midi_s <= wav_s <= midi_s * 1.05 + TAIL_SECONDS.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import wave
from types import SimpleNamespace

import numpy as np
import pytest
import symusic

from aurl.cli import main
from aurl.render import audio
from aurl.render.audio import PEAK, TAIL_SECONDS, RenderError, render_wav, write_wav

RATE = 22050  # half the default: the same checks, half the work
needs_synth = pytest.mark.skipif(
    (importlib.util.find_spec("tinysoundfont") is None and shutil.which("fluidsynth") is None)
    or audio.default_soundfont() is None,
    reason="no synthesizer or SoundFont: pip install --no-deps tinysoundfont; pip install pretty_midi",
)


def piece() -> symusic.Score:
    """The 12-second test piece of the module docstring."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    score.tempos.append(symusic.Tempo(2 * 1920, 60))
    piano, drums = symusic.Track("Piano", 0, False), symusic.Track("Drums", 0, True)
    for bar in (0, 2, 3):
        for beat in range(4):
            at = bar * 1920 + beat * 480
            for pitch in (60, 64, 67):
                piano.notes.append(symusic.Note(at, 480, pitch + beat, 90))
            drums.notes.append(symusic.Note(at, 120, 36 if beat % 2 == 0 else 38, 100))
    score.tracks.extend([piano, drums])
    return score


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@needs_synth
def test_a_piece_renders_to_its_length_audible_and_unclipped():
    score = piece()
    midi_s = score.to("second").end()
    assert midi_s == pytest.approx(12.0)  # the tempo change counts
    sound = render_wav(score, RATE)
    assert sound.dtype == np.int16 and sound.shape[1] == 2
    wav_s = len(sound) / RATE
    assert midi_s <= wav_s <= midi_s * 1.05 + TAIL_SECONDS
    assert rms(sound) > 300  # about -40 dBFS: clearly not silent
    assert np.abs(sound.astype(np.int32)).max() < 32767  # not clipped
    rest, playing = sound[int(2.6 * RATE) : int(3.9 * RATE)], sound[int(0.1 * RATE) : RATE]
    assert rms(rest) < 0.05 * rms(playing)  # bar 2 rests: near silence after the release


@needs_synth
def test_loud_chords_are_scaled_to_peak_and_silence_is_left_silent():
    loud = symusic.Score(480)
    for k in range(10):
        track = symusic.Track("", k, False)
        track.notes.extend(symusic.Note(0, 960, 40 + 5 * k + i, 127) for i in range(0, 24, 4))
        loud.tracks.append(track)
    peak = np.abs(render_wav(loud, RATE).astype(np.int32)).max()
    assert peak == pytest.approx(PEAK * 32767, abs=2)
    silent = render_wav(symusic.Score(480), RATE)
    assert len(silent) == round(TAIL_SECONDS * RATE) and not silent.any()


@needs_synth
def test_write_wav_writes_16_bit_stereo(tmp_path):
    seconds = write_wav(piece(), tmp_path / "a" / "piece.wav", RATE)
    with wave.open(str(tmp_path / "a" / "piece.wav")) as f:
        assert (f.getnchannels(), f.getsampwidth(), f.getframerate()) == (2, 2, RATE)
        assert f.getnframes() / RATE == pytest.approx(seconds)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["piece.wav"]  # no temporary left


def test_a_missing_or_broken_soundfont_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.sf2: no such file"):
        render_wav(piece(), RATE, soundfont=tmp_path / "nope.sf2")
    if importlib.util.find_spec("tinysoundfont") is not None:
        (tmp_path / "bad.sf2").write_bytes(b"not a soundfont")
        with pytest.raises(RenderError, match="bad.sf2"):
            render_wav(piece(), RATE, soundfont=tmp_path / "bad.sf2")
    with pytest.raises(ValueError, match="sample rate"):
        render_wav(piece(), 10)


def test_no_synthesizer_says_how_to_get_one(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tinysoundfont" else real(name, *a))  # fmt: skip
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RenderError, match="pip install --no-deps tinysoundfont"):
        audio.synthesizer()


def test_fluidsynth_is_the_fallback(tmp_path, monkeypatch):
    """A stand-in binary that writes 0.5 s of full-scale raw floats where -F says."""
    fake = tmp_path / "fluidsynth"
    fake.write_text(f"#!{sys.executable}\nimport sys, numpy as np\n"
                    "out = sys.argv[sys.argv.index('-F') + 1]\n"
                    f"np.full({RATE}, 2.0, '<f4').tofile(out)\n")  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setattr(audio, "synthesizer", lambda: str(fake))
    (tmp_path / "any.sf2").write_bytes(b"")
    sound = render_wav(piece(), RATE, soundfont=tmp_path / "any.sf2")
    assert len(sound) == round((12 + TAIL_SECONDS) * RATE)  # padded to the tail
    assert sound[0, 0] == round(PEAK * 32767) and not sound[RATE:].any()  # scaled, then silence


@needs_synth
def test_render_command_writes_the_wav(tmp_path, capsys):
    midi = tmp_path / "piece.mid"
    piece().dump_midi(str(midi))
    assert main(["render", str(midi), "--sample-rate", str(RATE)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'piece.wav'}: 13.0 s of audio"
    assert main(["render", str(midi), "-o", str(tmp_path / "o.wav"), "--sample-rate", "8000"]) == 0
    with wave.open(str(tmp_path / "o.wav")) as f:
        assert f.getframerate() == 8000 and f.getnframes() == 13 * 8000


def one_line_error(code: int, capsys, *words: str) -> None:
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aurl: error:"), lines
    for word in words:
        assert word in lines[0]


def test_render_command_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"\x00garbage, not a MIDI file" * 10)
    one_line_error(main(["render", str(bad)]), capsys, "bad.mid")
    one_line_error(main(["render", str(tmp_path / "missing.mid")]), capsys, "missing.mid")
    good = tmp_path / "good.mid"
    piece().dump_midi(str(good))
    one_line_error(main(["render", str(good), "--soundfont", str(tmp_path / "x.sf2")]), capsys,
                   "x.sf2")  # fmt: skip
    assert not list(tmp_path.glob("*.wav"))


class FakeGenerator:
    """Stands in for the model: one bar of the test piece per step, so the test stays fast."""

    def generate(self, bars, num, *args, **kwargs):
        pieces = [SimpleNamespace(score=piece(), bars=bars, asked_bars=bars, notes=36, seconds=12.0)
                  for _ in range(num)]  # fmt: skip
        return SimpleNamespace(pieces=pieces, new_tokens=10, tokens_per_second=100.0)

    def stream(self, bars, num, *args, **kwargs):
        for bar in range(1, bars + 1):
            for i in range(num):
                yield SimpleNamespace(score=piece(), piece=i, bar=bar, elapsed=0.1 * bar,
                                      bar_seconds=2.0, last=bar == bars)  # fmt: skip


@needs_synth
@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_generate_audio_writes_a_wav_beside_each_midi(stream, tmp_path, monkeypatch, capsys):
    import aurl.api

    monkeypatch.setattr(aurl.api, "load", lambda *a, **k: FakeGenerator())
    args = ["generate", "--bars", "2", "--num", "2", "--seed", "5", "--audio", *stream]
    assert main([*args, "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["aurl-5-01.mid", "aurl-5-01.wav", "aurl-5-02.mid", "aurl-5-02.wav"]
    assert capsys.readouterr().out.count("s of audio") == 2  # once per piece, also streaming
