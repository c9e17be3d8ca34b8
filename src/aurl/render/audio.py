"""Audio from MIDI: a Score rendered to 16-bit stereo WAV with a General MIDI SoundFont.

The synthesizer is the pip package ``tinysoundfont`` (MIT, wheels with no system library),
driven note by note from the Score itself, and the default SoundFont is ``TimGM6mb.sf2``,
which ships inside the pip package ``pretty_midi``. Where ``tinysoundfont`` is missing, a
system ``fluidsynth`` binary is used instead. Any other ``.sf2`` can be passed as
``soundfont``. Install the synthesizer with ``pip install --no-deps tinysoundfont``: its one
declared dependency, PyAudio, is for live playback only and needs a system library to build.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import symusic

from aurl.fileio import atomic_write_bytes

TAIL_SECONDS = 1.0  # rendered after the last event, so the final notes' release is heard
PEAK = 10 ** (-1 / 20)  # -1 dBFS: the loudest sample after normalising a mix that would clip
DRUM_BANK = 128  # the SoundFont bank of General MIDI percussion kits
SYSTEM_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
# tinysoundfont declares PyAudio, which it imports only for live playback (unused here) and
# which needs the PortAudio system library to build on Linux: hence --no-deps.
SYNTH_HINT = "pip install --no-deps tinysoundfont"
SOUNDFONT_HINT = "pip install pretty_midi"

# Event kinds, in the order they apply when they fall on the same sample: controls and bends
# first, then note-offs before note-ons, so a repeated note is released and struck again.
_CONTROL, _BEND, _OFF, _ON = 0, 1, 2, 3


class RenderError(ValueError):
    """Audio could not be rendered: no synthesizer, or a SoundFont it could not load."""


def default_soundfont() -> Path | None:
    """The General MIDI SoundFont used when none is given, or None where there is none.

    ``TimGM6mb.sf2`` from the installed ``pretty_midi`` package (found without importing
    it, which is slow), else the system's ``FluidR3_GM.sf2``.
    """
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    return SYSTEM_SOUNDFONT if SYSTEM_SOUNDFONT.is_file() else None


def resolve_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """The SoundFont to render with: ``soundfont`` if given, else :func:`default_soundfont`.

    Raises:
        FileNotFoundError: If the given file does not exist, or none was given and no
            default is installed; the message says how to get one.
    """
    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise FileNotFoundError(f"SoundFont {path}: no such file (pass an existing .sf2)")
        return path
    path = default_soundfont()
    if path is None:
        raise FileNotFoundError(
            f"no General MIDI SoundFont found: {SOUNDFONT_HINT} (it ships TimGM6mb.sf2), "
            "or pass --soundfont FILE.sf2"
        )
    return path


def synthesizer() -> str:
    """``"tinysoundfont"`` or the path of a ``fluidsynth`` binary, whichever is found first.

    Raises:
        RenderError: If neither is installed.
    """
    if importlib.util.find_spec("tinysoundfont") is not None:
        return "tinysoundfont"
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise RenderError(f"no synthesizer for audio: {SYNTH_HINT} (or install fluidsynth)")
    return binary


def check_render(soundfont: str | os.PathLike | None = None) -> Path:
    """Fail early, before a long generation, if rendering could not work; return the SoundFont.

    Raises:
        FileNotFoundError, RenderError: As :func:`render_wav` would.
    """
    synthesizer()
    return resolve_soundfont(soundfont)


def render_wav(score: symusic.Score, sample_rate: int = 44100,
               soundfont: str | os.PathLike | None = None) -> np.ndarray:  # fmt: skip
    """Synthesize ``score`` into 16-bit stereo audio.

    Times are taken in seconds, so tempo changes are honoured; the audio runs to the last
    event plus :data:`TAIL_SECONDS` of release. A mix that would clip is scaled down to
    peak at -1 dBFS; a quieter one (or silence) is left as it is.

    Args:
        score: The music, in any time unit.
        sample_rate: Frames per second of the audio.
        soundfont: A ``.sf2`` file; default :func:`default_soundfont`.

    Returns:
        (frames, 2) int16 array, left and right.

    Raises:
        ValueError: If ``sample_rate`` is not between 1000 and 384000.
        FileNotFoundError: If the SoundFont is missing.
        RenderError: If no synthesizer is installed, or it cannot load the SoundFont.
    """
    if not 1000 <= int(sample_rate) <= 384000:
        raise ValueError(f"sample rate {sample_rate}: expected 1000 to 384000 Hz")
    path = resolve_soundfont(soundfont)
    engine = synthesizer()
    seconds = score.to("second")
    if engine == "tinysoundfont":
        audio = _render_tinysoundfont(seconds, int(sample_rate), path)
    else:
        audio = _render_fluidsynth(seconds, int(sample_rate), path, engine)
    return _to_int16(audio)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """The bytes of a 16-bit WAV file holding ``audio``, (frames, channels) int16."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(audio.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()


def write_wav(score: symusic.Score, path: str | os.PathLike, sample_rate: int = 44100,
              soundfont: str | os.PathLike | None = None) -> float:  # fmt: skip
    """Render ``score`` (see :func:`render_wav`) and write it as a 16-bit stereo WAV file.

    The file appears whole or not at all. Returns the seconds of audio written.
    """
    audio = render_wav(score, sample_rate, soundfont)
    atomic_write_bytes(path, wav_bytes(audio, sample_rate))
    return len(audio) / sample_rate


def _to_int16(audio: np.ndarray) -> np.ndarray:
    """float audio (about -1..1) to int16, scaled down to :data:`PEAK` only if it would clip."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > PEAK:
        audio = audio * (PEAK / peak)
    return np.clip(np.rint(audio * 32767), -32768, 32767).astype(np.int16)


def _events(score: symusic.Score, sample_rate: int) -> np.ndarray:
    """(N, 5) int64 events of a seconds-based Score, in the order to play them.

    Columns: sample, kind, channel (the track's index), key or controller, value. A note
    lasts at least one sample, so its note-off never comes before its note-on.
    """
    rows = []
    for channel, track in enumerate(score.tracks):
        notes = track.notes.numpy()
        on = np.rint(notes["time"].astype(np.float64) * sample_rate).astype(np.int64)
        end = (notes["time"].astype(np.float64) + notes["duration"]) * sample_rate
        off = np.maximum(np.rint(end).astype(np.int64), on + 1)
        pitch, velocity = notes["pitch"].astype(np.int64), notes["velocity"].astype(np.int64)
        rows.append(_rows(on, _ON, channel, pitch, np.clip(velocity, 1, 127)))
        rows.append(_rows(off, _OFF, channel, pitch, np.zeros_like(pitch)))
        controls = track.controls.numpy()
        number = controls["number"].astype(np.int64)
        rows.append(_rows(_samples(controls["time"], sample_rate), _CONTROL, channel, number,
                          controls["value"].astype(np.int64)))  # fmt: skip
        if not (number == 64).any() and len(track.pedals):  # sustain only as pedals, no CC64
            pedals = track.pedals.numpy()
            down = _samples(pedals["time"], sample_rate)
            up = _samples(pedals["time"] + pedals["duration"], sample_rate)
            rows.append(_rows(down, _CONTROL, channel, np.full_like(down, 64), 127))
            rows.append(_rows(up, _CONTROL, channel, np.full_like(up, 64), 0))
        bends = track.pitch_bends.numpy()
        value = np.clip(bends["value"].astype(np.int64) + 8192, 0, 16383)
        rows.append(_rows(_samples(bends["time"], sample_rate), _BEND, channel, value, value))
    events = np.concatenate(rows) if rows else np.zeros((0, 5), np.int64)
    return events[np.lexsort((events[:, 2], events[:, 1], events[:, 0]))]


def _samples(times: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.rint(times.astype(np.float64) * sample_rate).astype(np.int64)


def _rows(at: np.ndarray, kind: int, channel: int, key: np.ndarray, value) -> np.ndarray:
    out = np.empty((len(at), 5), np.int64)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3], out[:, 4] = at, kind, channel, key, value
    return out


def _select_programs(synth, sfid: int, score: symusic.Score) -> None:
    """One channel per track: its program, drums (``is_drum``) on the percussion bank."""
    for channel, track in enumerate(score.tracks):
        bank, program = DRUM_BANK if track.is_drum else 0, int(track.program)
        try:
            synth.program_select(channel, sfid, bank, program, is_drums=track.is_drum)
        except RuntimeError:  # a program this SoundFont lacks: its first one in the bank
            synth.program_select(channel, sfid, bank, 0, is_drums=track.is_drum)


def _render_tinysoundfont(score: symusic.Score, sample_rate: int, soundfont: Path) -> np.ndarray:
    """(frames, 2) float32 audio, generated block by block between the events in time order."""
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        sfid = synth.sfload(str(soundfont))
    except (RuntimeError, OSError) as e:
        raise RenderError(f"SoundFont {soundfont}: tinysoundfont could not load it ({e})") from e
    _select_programs(synth, sfid, score)
    events = _events(score, sample_rate)
    last = int(events[-1, 0]) if len(events) else 0
    audio = np.zeros((last + round(TAIL_SECONDS * sample_rate), 2), np.float32)
    view = memoryview(audio.reshape(-1)).cast("B")
    frame_bytes = audio.itemsize * 2
    sounding: dict[tuple[int, int], int] = {}  # notes held per (channel, key), for overlaps
    pos = 0
    for at, kind, channel, key, value in events.tolist():
        if at > pos:
            synth.generate(at - pos, buffer=view[pos * frame_bytes : at * frame_bytes])
            pos = at
        if kind == _ON:
            sounding[channel, key] = sounding.get((channel, key), 0) + 1
            synth.noteon(channel, key, value)
        elif kind == _OFF:
            held = sounding.get((channel, key), 0) - 1
            sounding[channel, key] = max(held, 0)
            if held <= 0:  # an overlapping note of the same key still sounds otherwise
                synth.noteoff(channel, key)
        elif kind == _CONTROL:
            synth.control_change(channel, key, value)
        else:
            synth.pitchbend(channel, value)
    if len(audio) > pos:
        synth.generate(len(audio) - pos, buffer=view[pos * frame_bytes :])
    return audio


def _render_fluidsynth(score: symusic.Score, sample_rate: int, soundfont: Path,
                       binary: str) -> np.ndarray:  # fmt: skip
    """(frames, 2) float32 audio from a ``fluidsynth`` binary's fast render to raw floats."""
    with tempfile.TemporaryDirectory(prefix="aurl-render-") as tmp:
        midi, raw = Path(tmp) / "in.mid", Path(tmp) / "out.raw"
        score.dump_midi(str(midi))
        command = [binary, "-ni", "-q", "-g", "0.5", "-r", str(sample_rate), "-T", "raw",
                   "-O", "float", "-F", str(raw), str(soundfont), str(midi)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not raw.is_file():
            reason = (done.stderr or done.stdout).strip().splitlines()
            raise RenderError(f"fluidsynth failed: {reason[-1] if reason else done.returncode}")
        audio = np.fromfile(raw, dtype="<f4")
    audio = audio[: len(audio) // 2 * 2].reshape(-1, 2)
    end = round((score.end() + TAIL_SECONDS) * sample_rate)  # pad to the tail tinysoundfont gives
    return np.pad(audio, ((0, max(end - len(audio), 0)), (0, 0)))
