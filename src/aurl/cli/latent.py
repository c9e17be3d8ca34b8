"""The latent-space commands of VAE models: ``interpolate`` and ``vary``."""

from __future__ import annotations

from pathlib import Path

import click

model_option = click.option("--model", default=None,
                            help="A VAE model folder or run folder (model.arch: vae). "
                                 "Default: the shipped VAE (vae-small).")  # fmt: skip
seed_option = click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
                           help="Random seed; the same seed gives the same music.")  # fmt: skip
out_option = click.option("--out", type=click.Path(file_okay=False), default="outputs",
                          show_default=True, help="Folder for the MIDI files.")  # fmt: skip
sample_option = click.option("--sample", is_flag=True,
                             help="Sample each piece (with --temperature and --top-p) instead "
                                  "of decoding its latent greedily.")  # fmt: skip
temperature_option = click.option("--temperature", type=click.FloatRange(0, 10, min_open=True),
                                  default=1.0, show_default=True, help="With --sample.")  # fmt: skip
top_p_option = click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95,
                            show_default=True, help="With --sample.")  # fmt: skip
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
                             default="auto", show_default=True)  # fmt: skip


def decoding_options(command):
    """The options every latent command shares: model, seed, output and how to decode."""
    for option in reversed((model_option, seed_option, out_option, sample_option,
                            temperature_option, top_p_option, device_option)):  # fmt: skip
        command = option(command)
    return command


def _sampling(sample: bool, temperature: float, top_p: float):
    from aurl.generate.sampler import SamplingConfig

    return SamplingConfig(temperature=temperature, top_p=top_p, greedy=not sample)


def _write(result, out: str, stem: str) -> None:
    from aurl.midi import write_midi

    for i, piece in enumerate(result.pieces):
        path = write_midi(piece.score, Path(out) / f"{stem}-{i + 1:02d}.mid")
        click.echo(f"wrote {path}: {piece.bars} bars, {piece.notes} notes, {piece.seconds:.1f} s")


@click.command()
@click.argument("first", type=click.Path(dir_okay=False))
@click.argument("second", type=click.Path(dir_okay=False))
@click.option("--steps", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Pieces written, both ends included.")  # fmt: skip
@click.option("--method", type=click.Choice(["slerp", "lerp"]), default="slerp", show_default=True,
              help="Spherical or straight-line interpolation of the latents.")  # fmt: skip
@decoding_options
def interpolate(first, second, steps, method, model, seed, out, sample, temperature, top_p,
                device) -> None:  # fmt: skip
    """Write the interpolation between the first K bars of FIRST and of SECOND (K: the VAE's
    segment), the ends included: FIRST's and SECOND's reconstructions."""
    from aurl.api import load
    from aurl.paths import SHIPPED_VAE

    gen = load(model, device, SHIPPED_VAE)
    result = gen.interpolate(first, second, steps, method, _sampling(sample, temperature, top_p),
                             seed)  # fmt: skip
    _write(result, out, f"{Path(first).stem}-to-{Path(second).stem}")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--num", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Variations to write.")  # fmt: skip
@click.option("--amount", type=click.FloatRange(0, 10), default=None,
              help="How far from the segment's latent, in standard deviations of the prior "
                   "[default: 0.5; 0 with --attribute].")  # fmt: skip
@click.option("--attribute", default=None, metavar="NAME=AMOUNT",
              help="Move along an attribute learnt from the training set instead: density, "
                   "pitch, polyphony or activity, e.g. density=+1.5 (NUM steps up to it).")  # fmt: skip
@decoding_options
def vary(file, num, amount, attribute, model, seed, out, sample, temperature, top_p,
         device) -> None:  # fmt: skip
    """Write variations of the first K bars of FILE: latents drawn near its own, or moved
    along an attribute (denser, higher, more voices, busier rhythm)."""
    from aurl.api import load
    from aurl.paths import SHIPPED_VAE

    move = None
    if attribute is not None:
        name, sep, far = attribute.partition("=")
        try:
            move = (name.strip(), float(far))
        except ValueError:
            raise click.BadParameter(f"{attribute!r}: expected NAME=AMOUNT, e.g. density=+1.5",
                                     param_hint="--attribute") from None  # fmt: skip
        if not sep:
            raise click.BadParameter(f"{attribute!r}: expected NAME=AMOUNT",
                                     param_hint="--attribute")  # fmt: skip
    amount = (0.0 if move else 0.5) if amount is None else amount
    gen = load(model, device, SHIPPED_VAE)
    result = gen.vary(file, num, amount, _sampling(sample, temperature, top_p), seed, move)
    _write(result, out, f"{Path(file).stem}-{move[0] if move else 'var'}")
