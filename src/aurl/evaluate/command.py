"""The ``aurl evaluate`` command: a thin wrapper over :mod:`aurl.evaluate.run`."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--model",
    default=None,
    help="Model folder or run folder (runs/NAME). Default: the shipped model.",
)
@click.option(
    "--data",
    default=None,
    help="Evaluate on this folder of MIDI files or named corpus (as `aurl prepare` takes), "
    "prepared with the model's tokenizer. Default: the data the model was trained on.",
)
@click.option(
    "--files",
    type=click.Path(file_okay=False),
    default=None,
    help="Evaluate the MIDI files in this folder instead of a model.",
)
@click.option(
    "--reference",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of MIDI files to compare --files with.",
)
@click.option(
    "--num",
    type=click.IntRange(2, 10_000),
    default=100,
    show_default=True,
    help="Samples to generate and compare with the test split.",
)
@click.option(
    "--bars",
    type=click.IntRange(1, 512),
    default=8,
    show_default=True,
    help="Bars per sample; test pieces are cut to as many bars.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; the same seed gives the same report.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="evaluation",
    show_default=True,
    help="Report folder (replaced if it holds an earlier report).",
)
@click.option(
    "--controls",
    "controls_num",
    type=click.IntRange(0, 10_000),
    default=0,
    help="A model with controls: this many samples under random requests (key, chords, "
    "density, polyphony, register), scored against their requests and shuffled ones.",
)
@click.option(
    "--styles",
    default=None,
    help="A model with controls: a style classifier of these corpora (comma-separated, e.g. "
    "bach,palestrina,essen), on held-out real pieces and on samples asked for each style.",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG figures.")
@click.option("--quiet", is_flag=True, help="Print only the report's location.")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True
)
def evaluate(model, data, files, reference, num, bars, seed, out, controls_num, styles, no_plots,
             quiet, device) -> None:  # fmt: skip
    """Measure a model, or compare two folders of MIDI files, and write a report folder.

    With a model: test-split likelihood against a Kneser–Ney n-gram baseline, grammar
    validity of samples drawn without the mask, and NUM samples compared with the test split
    (MusPy and Yang & Lerch features, overlapped area and KL divergence, memorization of the
    training set, diversity). With --files and --reference: the same comparison for any two
    sets of MIDI files. The folder gets report.json, report.md, PNG figures and the samples.
    The model's dataset is rebuilt from its source on the first run and cached after that.
    With --data, all of this uses the splits of that data instead, so that models can be
    compared on the same pieces. A latent model (VAE) gets its own report instead, on NUM
    test segments: reconstruction, latent diagnostics, interpolation, attribute vectors and
    NUM prior samples against the test segments.
    """
    from aurl.evaluate.report import write_report
    from aurl.evaluate.run import EvalOptions, evaluate_files, evaluate_model

    if (files is None) != (reference is None):
        raise ValueError("--files and --reference go together")
    if files is not None and (model is not None or data is not None):
        raise ValueError("give either --model (and --data) or --files/--reference, not both")
    if files is not None and (controls_num or styles):
        raise ValueError("--controls and --styles measure a model; not with --files")
    log = (lambda _: None) if quiet else click.echo
    options = EvalOptions(num=num, bars=bars, seed=seed, validity_num=min(num, 16))
    if files is None and _latent(model, data, out, device, quiet, num, seed):
        return
    if files is not None:
        result = evaluate_files(files, reference, options, log=log)
    else:
        measure = _control_measures(model, device, controls_num, styles, bars, seed, log)
        result = evaluate_model(model, options, device, log=log, progress=not quiet, data=data)
        if measure is not None:
            result.report["controls"] = measure()
    path = write_report(result, out, plots=not no_plots)
    report = result.report
    if not quiet:
        o = report["overall"]
        m = report["memorization"]["summary"]
        oa, kl = (f"{v:.3f}" if v is not None else "n/a" for v in (o["mean_oa"], o["mean_kl"]))
        click.echo(
            f"mean OA {oa}, mean KL {kl}; "
            f"{m['flagged']} of {report['sets']['generated']['pieces']} pieces flagged "
            f"as copied; {report['timing']['total']:.1f} s"
        )
    click.echo(f"wrote {path / 'report.md'}")


def _control_measures(model, device, num: int, styles: str | None, bars: int, seed: int, log):
    """What ``--controls`` and ``--styles`` measure, checked now and run later (see
    :mod:`aurl.evaluate.controls_eval`): a function giving the report's section, or None."""
    if not num and not styles:
        return None
    from aurl.device import pick_device
    from aurl.evaluate.controls_eval import adherence_report, style_report
    from aurl.models import load_model
    from aurl.paths import resolve_model_path

    folder = load_model(resolve_model_path(model), pick_device(device))
    if not folder.tokenizer.vocab.has_controls:
        raise ValueError(f"{folder.path}: --controls and --styles need a model trained with "
                         "controls (tokenizer.controls=true); this one was trained without")  # fmt: skip
    names = [s.strip() for s in (styles or "").split(",") if s.strip()]
    folder.model.eval()

    def measure() -> dict:
        out = {}
        if num:
            log(f"controls: {num} samples under random requests")
            out["adherence"] = adherence_report(folder.model, folder.tokenizer.vocab, num, bars,
                                                seed)  # fmt: skip
        if names:
            out["style"] = style_report(folder.model, folder.tokenizer, names,
                                        max(num // len(names), 8), bars, seed, log=log)  # fmt: skip
        return out

    return measure


def _latent(model, data, out, device, quiet, num: int, seed: int) -> bool:
    """Evaluate ``model`` as a latent model if it is one; False (nothing done) otherwise."""
    from aurl.device import pick_device
    from aurl.models import load_model
    from aurl.models.vae import VAE
    from aurl.paths import resolve_model_path

    dev = pick_device(device)
    folder = load_model(resolve_model_path(model), dev)
    if not isinstance(folder.model, VAE):
        return False
    from aurl.evaluate.latent_report import evaluate_latent, write_latent_report

    report = evaluate_latent(model, folder, dev, data, count=num, seed=seed, progress=not quiet)
    path = write_latent_report(report, out)
    if not quiet:
        d, r = report["diagnostics"], report["reconstruction"]
        click.echo(f"token accuracy {d['token_accuracy']}, note F1 {r['note_f1']}, "
                   f"interpolation rho {report['interpolation']['density_rho']}; "
                   f"{report['timing_s']} s")  # fmt: skip
    click.echo(f"wrote {path / 'report.md'}")
    return True
