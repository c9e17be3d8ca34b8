"""The ``analyze`` command: key, harmony, structure and melody studies of MIDI files.

Only click and the standard library are imported here; the analysis loads when the command
runs, so ``aurl --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _collect(paths: tuple[str, ...]) -> tuple[list[tuple[Path, str]], bool]:
    """Every MIDI file to analyse with a unique output name, and whether a folder was given.

    Raises:
        FileNotFoundError: For a path that does not exist.
        ValueError: For a folder without MIDI files.
    """
    from aurl.midi import midi_files

    found: list[tuple[Path, str]] = []
    any_folder = False
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{raw}: no such file or folder")
        if path.is_dir():
            any_folder = True
            files = midi_files(path)
            if not files:
                raise ValueError(f"{raw}: no .mid, .midi or .kar files in this folder")
            found += [(f, f.relative_to(path).with_suffix("").as_posix()) for f in files]
        else:
            found.append((path, path.stem))
    used: set[str] = set()
    named = []
    for path, name in found:
        name = name.replace("/", "-")
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        named.append((path, name))
    return named, any_folder


def _analyze_one(job: tuple[str, str, str, bool]) -> tuple[str, dict | None, str]:
    """Analyse one file, write its JSON (and plots); return (name, summary or None, text).

    A file that cannot be read or holds no pitched notes gives ``(name, None, reason)``.
    """
    from aurl.midi import MidiError

    try:
        return _analyze_and_write(*job)
    except (MidiError, ValueError) as err:
        return job[1], None, (str(err).splitlines() or [type(err).__name__])[0]


def _analyze_and_write(path: str, name: str, out: str, plots: bool) -> tuple[str, dict, str]:
    from aurl.analysis.analyze import analyze_piece
    from aurl.analysis.piece import piece_from_score
    from aurl.analysis.report import piece_text
    from aurl.fileio import atomic_write_json
    from aurl.midi import read_midi

    analysis = analyze_piece(piece_from_score(read_midi(path), name))
    summary = {"source": path, **analysis.summary}
    atomic_write_json(Path(out) / f"{name}.json", summary)
    if plots:
        from aurl.analysis.plots import write_plots

        write_plots(analysis, out)
    return name, summary, piece_text(summary)


def _run_jobs(jobs: list[tuple[str, str, str, bool]], workers: int):
    if workers <= 1 or len(jobs) <= 1:
        yield from map(_analyze_one, jobs)
        return
    import multiprocessing

    with multiprocessing.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(_analyze_one, jobs, chunksize=4)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option(
    "--out",
    "out_dir",
    default="analysis",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the JSON files and plots.",
)
@click.option("--no-plots", is_flag=True, help="Write JSON only, no PNG plots.")
@click.option(
    "--plot-limit",
    type=click.IntRange(0),
    default=12,
    show_default=True,
    help="Draw plots for the first N pieces only (drawing dominates the time); 0: all.",
)
@click.option("--quiet", is_flag=True, help="Print only skipped files and the final line.")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="Processes analysing files in parallel.",
)
def analyze(
    paths: tuple[str, ...],
    out_dir: str,
    no_plots: bool,
    plot_limit: int,
    quiet: bool,
    workers: int,
) -> None:
    """Analyse MIDI files: key and modulations, chords and Roman numerals, cadences,
    form and repeats, phrases, intensity, melody contour, motifs and scale.

    Writes OUT/<piece>.json for every file, plus <piece>.chords.png (chords over a piano
    roll) and <piece>.similarity.png (bar self-similarity with the sections) for the first
    --plot-limit pieces, unless --no-plots. For a folder (searched recursively) it also writes OUT/corpus.json with
    statistics over all pieces; a file that cannot be read is reported and skipped.
    """
    from aurl.analysis.corpus import corpus_summary
    from aurl.analysis.report import corpus_text
    from aurl.fileio import atomic_write_json

    files, any_folder = _collect(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(path), name, str(out), not no_plots and (plot_limit == 0 or i < plot_limit))
        for i, (path, name) in enumerate(files)
    ]
    summaries, skipped = [], []
    if not any_folder and len(files) == 1:
        results = iter([_analyze_and_write(*jobs[0])])  # errors stop the command
    else:
        results = _run_jobs(jobs, workers)
    for (path, _), (_, summary, text) in zip(files, results, strict=True):
        if summary is None:
            skipped.append({"file": str(path), "reason": text})
            click.echo(f"skipped {path}: {text}", err=True)
            continue
        summaries.append(summary)
        if not quiet:
            click.echo(text)
    if not summaries:
        raise ValueError("no file could be analysed")
    if any_folder or len(files) > 1:
        corpus = corpus_summary(summaries, skipped)
        atomic_write_json(out / "corpus.json", corpus)
        if not quiet:
            click.echo(corpus_text(corpus))
    click.echo(
        f"analysed {len(summaries)} file(s), skipped {len(skipped)}; wrote {out}", file=sys.stdout
    )
