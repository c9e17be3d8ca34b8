"""``aurl infill`` and ``aurl harmonize``: regenerate part of a piece with both sides in view."""

from __future__ import annotations

import random
from pathlib import Path

import click

from aurl.cli.controls import (
    LEARNED,
    control_options,
    control_request,
    guidance_option,
    steer_option,
)
from aurl.generate.guidance_default import guidance_for, steer_for

_SHARED = (
    click.option("--model", default=None,
                 help="A model folder or run folder trained with tokenizer.infill (and tracks "
                      "for --tracks and harmonize)."),
    click.option("--num", type=click.IntRange(1, 256), default=1, show_default=True,
                 help="Versions to write."),
    click.option("--temperature", type=click.FloatRange(0, 10, min_open=True), default=1.0,
                 show_default=True, help="Softmax temperature."),
    click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
                 help="Keep the K most likely tokens (0: all)."),
    click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95,
                 show_default=True, help="Nucleus sampling mass."),
    click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
                 help="Random seed; the same seed gives the same music."),
    click.option("--out", type=click.Path(file_okay=False), default="outputs",
                 show_default=True, help="Folder for the MIDI files."),
    click.option("--threads", type=click.IntRange(1, 512), default=None,
                 help="CPU threads (default: the cores that are idle now)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                 show_default=True),
)  # fmt: skip


def shared_options(command):
    for option in reversed(_SHARED):
        command = option(command)
    return command


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--bars", "span", required=True,
              help="Bars to regenerate, counted from 1: 5-8, or 5 for one bar.")  # fmt: skip
@click.option("--tracks", default=None,
              help="Regenerate only these tracks (names or numbers from 1: alto,tenor), the "
                   "others kept as context.")  # fmt: skip
@shared_options
@control_options(only=LEARNED)
@guidance_option
@steer_option
def infill(file, span, tracks, model, num, temperature, top_k, top_p, seed, out, threads,
           device, guidance, steer, **controls) -> None:  # fmt: skip
    """Regenerate bars of FILE given everything before and after them (or, with --tracks,
    those tracks over the bars). Every other note is written back unchanged. The controls
    (a model trained with them) steer the new bars: bar controls are cycled over them."""
    request = control_request(controls)
    gen, sampling, seed = _setup(model, device, threads, temperature, top_k, top_p, seed,
                                 guidance_for(guidance, request),
                                 steer_for(steer, request, filling=True))  # fmt: skip
    result = gen.infill(file, span, tracks, num, sampling, seed, request)
    _write(result, out, f"{Path(file).stem}-infill-{seed}", seed)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@shared_options
@control_options(only=LEARNED)
@guidance_option
@steer_option
def harmonize(file, model, num, temperature, top_k, top_p, seed, out, threads, device,
              guidance, steer, **controls) -> None:  # fmt: skip
    """Write Alto, Tenor and Bass under the one-track melody of FILE, which comes back note
    for note as the Soprano. The controls (--chords: one per bar, cycled) steer the voices."""
    request = control_request(controls)
    gen, sampling, seed = _setup(model, device, threads, temperature, top_k, top_p, seed,
                                 guidance_for(guidance, request),
                                 steer_for(steer, request, filling=True))  # fmt: skip
    result = gen.harmonize(file, num, sampling, seed, request)
    _write(result, out, f"{Path(file).stem}-harmony-{seed}", seed)


def _setup(model, device, threads, temperature, top_k, top_p, seed, guidance, steer):
    from aurl.api import load
    from aurl.generate.sampler import SamplingConfig

    gen = load(model, device, threads=threads)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p,
                              guidance=guidance, steer=steer)  # fmt: skip
    return gen, sampling, seed if seed is not None else random.randrange(2**31)


def _write(result, out: str, stem: str, seed: int) -> None:
    from aurl.midi import write_midi

    for i, piece in enumerate(result.pieces):
        path = write_midi(piece.score, Path(out) / f"{stem}-{i + 1:02d}.mid")
        click.echo(f"wrote {path}: {piece.bars} bars, {piece.notes} notes, {piece.seconds:.1f} s "
                   f"(seed {seed})")  # fmt: skip
