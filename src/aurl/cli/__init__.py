"""The ``aurl`` command. Subcommands are thin wrappers over the Python API.

Every expected failure (bad option, missing or corrupt file, bad config value) prints one
line, ``aurl: error: ...``, and exits with status 2. ``--debug`` shows tracebacks instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from aurl import __version__
from aurl.analysis.command import analyze
from aurl.cli.controls import control_options, control_request, guidance_option, steer_option
from aurl.cli.export import export
from aurl.cli.infill import harmonize, infill
from aurl.cli.latent import interpolate, vary
from aurl.cli.progress import GenerationProgress
from aurl.cli.render import render
from aurl.cli.serve import serve
from aurl.cli.train import distill, finetune, train
from aurl.cli.tune import tune
from aurl.evaluate.command import evaluate
from aurl.generate.guidance_default import guidance_for, steer_for

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aurl")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Aurl: symbolic music generation. MIDI in, a trained transformer, new music out.

    Start with `aurl generate` (uses the model that ships with Aurl), or build your own:
    `aurl prepare [FOLDER]`, then `aurl train --config configs/small.yaml`.
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("source", required=False)
@click.option("--workers", type=click.IntRange(1, 256), default=2, show_default=True,
              help="Processes reading and encoding files.")  # fmt: skip
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Convert only the first N scores of a named corpus (for a quick try).")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds one file may take; past it the file is skipped, its worker replaced.")  # fmt: skip
@click.option(
    "--strict", is_flag=True, help="Skip files that need a repair instead of repairing them."
)
@click.option("--scan-all-notes", is_flag=True,
              help="Look for never-closed notes in every file (about 30% slower).")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Take the tokenizer, data.preprocess and data.strict from this run config.")  # fmt: skip
@click.option("--list", "list_corpora", is_flag=True, help="List the named corpora and exit.")
@click.option("--status", is_flag=True, help="Show what the cache holds and exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prepare(source: str | None, workers: int, limit: int | None, timeout: float, strict: bool,
            scan_all_notes: bool, config_path: str | None, list_corpora: bool, status: bool,
            quiet: bool) -> None:  # fmt: skip
    """Tokenize a corpus into cached train/val/test shards.

    SOURCE is a folder of .mid/.midi/.kar files (searched recursively) or the name of a
    corpus that ships with music21: `bach` (the default), `palestrina`, `quartets`,
    `monteverdi`, `essen`, `ryans-mammoth`, `oneills`, `airds-airs` (see --list, with their
    licences).

    Files are read in worker processes with a time limit; what can be repaired is repaired
    and reported (notes never closed, zero-length and overlapping notes, absurd tempos,
    a huge trailing gap, empty tracks); identical pieces are kept once. The dataset folder
    gets report.jsonl, one line per file. The cache is content-addressed: a second run
    returns at once, adding files encodes only the new ones, and changing a setting
    rebuilds.
    """
    from aurl.data.prepare import prepare as run_prepare
    from aurl.data.prepare import summary
    from aurl.data.sources import resolve_source

    if status:
        from aurl.data.prepare import cache_status

        click.echo(cache_status())
        return
    if list_corpora:
        from aurl.data.corpora import list_corpora as corpora

        for info in corpora():
            click.echo(f"{info.name:<14} {info.scores:>5} scores  {info.description}")
            click.echo(f"{'':<14} licence: {info.licence}")
        return
    from aurl.config import load_config
    from aurl.tokens import Tokenizer

    config = load_config(config_path)
    src = resolve_source(source or config.data.source, workers, progress=not quiet, limit=limit)
    if src.licence:
        click.echo(f"licence of {src.label}: {src.licence}")
    dataset = run_prepare(src, Tokenizer(config.tokenizer), workers=workers, progress=not quiet,
                          timeout=timeout, strict=strict or config.data.strict,
                          scan_all=scan_all_notes, preprocessing=config.data.preprocess)  # fmt: skip
    click.echo(summary(dataset))


@cli.command()
@click.option(
    "--model",
    default=None,
    help="Model folder, run folder (runs/NAME) or shipped model (many-small, bach-small, vae-small). "
    "Default: many-small.",
)
@click.option(
    "--bars", type=click.IntRange(1, 512), default=8, show_default=True, help="New bars per piece."
)
@click.option(
    "--num",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Pieces to generate (one batch).",
)
@click.option("--temperature", type=click.FloatRange(0, 10, min_open=True), default=1.0, show_default=True,
              help="Softmax temperature; below 1 is safer, above 1 wilder.")  # fmt: skip
@click.option(
    "--top-k",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Keep the K most likely tokens (0: all).",
)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
              help="Nucleus sampling: keep tokens up to this probability mass.")  # fmt: skip
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Random seed; the same seed gives the same music.")  # fmt: skip
@click.option(
    "--prompt", type=click.Path(dir_okay=False), default=None, help="MIDI file to continue."
)
@click.option("--prompt-bars", type=click.IntRange(1, 512), default=4, show_default=True,
              help="Bars of the prompt to keep before continuing.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False), default="outputs", show_default=True,
              help="Folder for the MIDI files.")  # fmt: skip
@click.option("--no-grammar", is_flag=True, help="Sample without the grammar mask (the raw model).")
@click.option("--beams", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Beam search with this many beams instead of sampling (most likely piece).")  # fmt: skip
@click.option("--length-penalty", type=click.FloatRange(0, 5), default=1.0, show_default=True,
              help="Beam search: score = log p / tokens ** this (0 favours short pieces).")  # fmt: skip
@click.option("--best-of", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Sample this many candidates per piece and keep the one the model finds most likely "
                   "(with controls: the one the analysis reads as following them best).")  # fmt: skip
@click.option("--stream", is_flag=True,
              help="Write each piece bar by bar (a valid MIDI after every bar) and print each bar's time.")  # fmt: skip
@click.option("--audio", is_flag=True,
              help="Also write a WAV beside each MIDI file (General MIDI SoundFont, as `aurl render`).")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 512), default=None,
              help="CPU threads (default: $AURL_THREADS, else the cores that are idle now).")  # fmt: skip
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")  # fmt: skip
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True
)
@click.option("--backend", type=click.Choice(["auto", "torch", "onnx"]), default="auto", show_default=True,
              help="auto: onnxruntime on the CPU where `aurl export` has made an export of exactly this model, "
                   "else PyTorch; onnx: --model's export (its onnx/ folder, or an ONNX folder).")  # fmt: skip
@control_options
@guidance_option
@steer_option
def generate(model, bars, num, temperature, top_k, top_p, seed, prompt, prompt_bars, out,
             no_grammar, beams, length_penalty, best_of, stream, audio, threads, progress,
             device, backend, guidance, steer, **controls) -> None:  # fmt: skip
    """Generate new music with the shipped model or your own, and write MIDI files.

    Controls (for a model trained with them; each optional): --style, --key, --density,
    --polyphony, --register and --chords are learned tendencies; --instruments, --voices,
    --time-signature and --tempo are held exactly.
    """
    import random

    from aurl.api import load
    from aurl.generate.sampler import SamplingConfig

    request = control_request(controls)
    if audio:
        from aurl.render.audio import check_render

        check_render()  # a missing synthesizer fails now, not after the generation
    gen = load(model, device, threads=threads, backend=backend)
    seed = seed if seed is not None else random.randrange(2**31)
    prompt_ids, taken = (None, 0) if prompt is None else gen.prompt_ids(prompt, prompt_bars)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p,
                              grammar=not no_grammar, beams=beams, length_penalty=length_penalty,
                              best_of=best_of, steer=(steer := steer_for(steer, request)),
                              guidance=guidance_for(guidance, request, steer))  # fmt: skip
    stem = f"{Path(prompt).stem}-cont" if prompt else "aurl"
    paths = [Path(out) / f"{stem}-{seed}-{i + 1:02d}.mid" for i in range(num)]
    if stream:
        _stream(gen, paths, bars, sampling, seed, prompt_ids, taken, request, audio)
        return
    show = sys.stderr.isatty() if progress is None else progress
    with GenerationProgress(num * bars, taken, enabled=show) as bar:
        result = gen.generate(bars, num, sampling, seed, prompt_ids, taken, progress=bar.update,
                              controls=request)  # fmt: skip
    speed = f"{result.new_tokens} tokens at {result.tokens_per_second:.0f} tokens/s, seed {seed}"
    for path, piece in zip(paths, result.pieces, strict=True):
        _write(piece.score, path)
        line = f"wrote {path}: {_bars(piece.bars, piece.asked_bars)}, {piece.notes} notes, {piece.seconds:.1f} s"
        click.echo(f"{line} ({speed})" if num == 1 else line)
        if audio:
            _write_audio(piece.score, path)
    if num > 1:
        click.echo(f"{num} pieces: {speed}")


def _bars(bars: int, asked: int) -> str:
    """``16 bars``, or ``3 of 16 bars (ended short: ...)`` for a piece that stopped early."""
    if bars >= asked:
        return f"{bars} bars"
    return (f"{bars} of {asked} bars (ended short: the model did not close its bars within its "
            "token budget)")  # fmt: skip


def _write(score, path: Path) -> None:
    from aurl.midi import write_midi

    write_midi(score, path)


def _write_audio(score, path: Path) -> None:
    """Render ``score`` to a WAV beside the MIDI file ``path`` (same stem)."""
    from aurl.render.audio import write_wav

    wav = path.with_suffix(".wav")
    click.echo(f"wrote {wav}: {write_wav(score, wav):.1f} s of audio")


def _stream(gen, paths: list[Path], bars: int, sampling, seed: int, prompt_ids, taken: int,
            controls=None, audio: bool = False) -> None:  # fmt: skip
    """Write every piece bar by bar and print each bar's time against its length."""
    total = taken + bars
    last_at = [0.0] * len(paths)
    for event in gen.stream(bars, len(paths), sampling, seed, prompt_ids, taken, controls):
        _write(event.score, paths[event.piece])
        took, last_at[event.piece] = event.elapsed - last_at[event.piece], event.elapsed
        where = f"{paths[event.piece]}" if len(paths) > 1 else "bar"
        speed = (f"{took:.2f} s for {event.bar_seconds:.2f} s of music"
                 f" ({event.bar_seconds / max(took, 1e-9):.1f}x real time)")  # fmt: skip
        click.echo(f"{where} {event.bar}/{total}: {speed}")
        if event.last:
            notes = event.score.note_num()
            click.echo(f"wrote {paths[event.piece]}: {_bars(event.bar, total)}, {notes} notes, "
                       f"seed {seed}")  # fmt: skip
            if audio:
                _write_audio(event.score, paths[event.piece])


cli.add_command(analyze)
cli.add_command(evaluate)
for command in (
    train,
    finetune,
    distill,
    tune,
    interpolate,
    vary,
    infill,
    harmonize,
    render,
    serve,
    export,
):
    cli.add_command(command)


def _one_line(error: object) -> str:
    """The first line of an error or message (never empty)."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning expected failures into one line and exit code 2."""
    from aurl.data.sources import SourceError
    from aurl.errors import ConfigError, DivergedError, ModelLoadError
    from aurl.midi import MidiError

    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("AURL_DEBUG"))
    expected = (ConfigError, SourceError, MidiError, ModelLoadError, FileNotFoundError, ValueError,
                DivergedError)  # fmt: skip
    try:
        cli.main(args=args, prog_name="aurl", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else str(e))
        return EXIT_USAGE
    except click.ClickException as e:
        click.echo(f"aurl: error: {_one_line(e.format_message())}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo("aurl: interrupted", err=True)
        return 130
    except expected as e:
        if debug:
            raise
        click.echo(f"aurl: error: {_one_line(e)}", err=True)
        return EXIT_USAGE
    except Exception as e:
        if debug:
            raise
        click.echo(f"aurl: internal error: {type(e).__name__}: {_one_line(e)} "
                   "(run with --debug for the traceback)", err=True)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
