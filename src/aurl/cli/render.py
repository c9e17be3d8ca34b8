"""``aurl render``: a MIDI file to a 16-bit stereo WAV with a General MIDI SoundFont."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "output", type=click.Path(dir_okay=False), default=None,
              help="WAV file to write (default: FILE's name with .wav, beside it).")  # fmt: skip
@click.option("--sample-rate", type=click.IntRange(8000, 192000), default=44100,
              show_default=True, help="Frames per second of the audio.")  # fmt: skip
@click.option("--soundfont", type=click.Path(dir_okay=False), default=None,
              help="A .sf2 file to play with (default: TimGM6mb.sf2 from pretty_midi).")  # fmt: skip
def render(file: str, output: str | None, sample_rate: int, soundfont: str | None) -> None:
    """Render the MIDI FILE to audio: each track on its General MIDI program, drum tracks
    on the percussion kit, tempo changes honoured, a second of release at the end."""
    from aurl.midi import read_midi
    from aurl.render.audio import write_wav

    score = read_midi(file)
    path = Path(output) if output else Path(file).with_suffix(".wav")
    seconds = write_wav(score, path, sample_rate, soundfont)
    click.echo(f"wrote {path}: {seconds:.1f} s of audio")
