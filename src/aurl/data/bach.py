"""The default corpus: the Bach chorales that ship inside ``music21``, converted to MIDI.

Each score is parsed with music21, its repeats are expanded, and it is written as a MIDI
file with one track per voice. Conversion runs in worker processes; a score that fails
(for example one whose repeats music21 cannot expand) is reported and skipped, and the
run goes on. Converted files are cached: a second call converts nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import multiprocessing
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aurl.fileio import atomic_write_bytes, atomic_write_json

SKIPPED_FILE = "_skipped.json"

# Files in music21's ``corpus/bach`` folder that are not chorales.
NON_CHORALES = frozenset({"bwv846"})  # Well-Tempered Clavier I, Prelude in C major

_SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")


@dataclass
class ConversionReport:
    """What :func:`convert_bach_chorales` left in its output folder.

    Attributes:
        written: MIDI files now present in the output folder, cached ones included.
        skipped: ``(score name, one-line reason)`` for every score that could not be converted.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def bach_chorale_paths() -> list[Path]:
    """Return the Bach chorale score files that ship inside music21, sorted by file name.

    These are the score files of ``music21.corpus.getComposer("bach")`` that sit directly
    in music21's ``corpus/bach`` folder (the Roman-numeral analyses in ``choraleAnalyses``
    are not scores), less known non-chorales. The folder is listed directly so that
    music21 need not be imported (which keeps a cached second run near-instant).
    """
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("music21 is not installed; it ships the Bach chorales")
    folder = Path(next(iter(spec.submodule_search_locations))) / "corpus" / "bach"
    keep = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _SCORE_SUFFIXES and p.stem not in NON_CHORALES
    ]
    return sorted(keep, key=lambda p: p.name)


def midi_names(paths: Iterable[Path]) -> dict[Path, str]:
    """Give each score a unique MIDI file stem.

    A score keeps its own stem (``bwv269``) unless another score shares it; then the
    MusicXML file keeps the plain stem and the others get their format appended
    (``bwv277.krn`` becomes ``bwv277-krn``). Any clash left gets the parent folder in front.
    """
    paths = sorted(paths, key=lambda p: (p.stem, not _is_musicxml(p), p.name, str(p)))
    names: dict[Path, str] = {}
    used: set[str] = set()
    for p in paths:
        name = p.stem
        if name in used:
            name = f"{p.stem}-{p.suffix.lstrip('.').lower()}"
        if name in used:
            name = f"{p.parent.name}-{name}"
        n = 2
        base = name
        while name in used:
            name = f"{base}-{n}"
            n += 1
        used.add(name)
        names[p] = name
    return names


def _is_musicxml(path: Path) -> bool:
    return path.suffix.lower() in (".mxl", ".xml", ".musicxml")


def chorale_to_midi_bytes(path: str | Path) -> bytes:
    """Parse one score with music21, expand its repeats, and return it as MIDI bytes.

    Each part becomes its own MIDI track, after a conductor track with tempo, time and
    key signatures. Repeats are expanded by music21's MIDI export itself, which calls
    ``expandRepeats()`` on any score with measures; calling it here as well would only
    copy the score once more (about 30% slower, byte-identical output). A score whose
    repeats cannot be expanded raises ``music21.repeat.ExpanderException``. Lyrics are
    dropped: they carry no music and would read back as extra note-less tracks.

    Raises:
        Exception: whatever music21 raises, for example ``ExpanderException`` when the
            repeats cannot be expanded.
    """
    from music21 import converter, midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(str(path), forceSource=True)
        for note in score.recurse().notesAndRests:
            note.lyrics = []
        return midi.translate.music21ObjectToMidiFile(score).writestr()


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _convert_one(job: tuple[str, str, str]) -> tuple[str, str | None]:
    """Convert one score to ``out``; return ``(name, None)`` or ``(name, reason)``. Never raises."""
    name, src, out = job
    try:
        atomic_write_bytes(out, chorale_to_midi_bytes(src))
    except Exception as exc:  # one bad score must never stop the run
        return name, _one_line(exc)
    return name, None


def _music21_version() -> str:
    return importlib.metadata.version("music21")


def _load_skips(out_dir: Path) -> dict[str, dict[str, str]]:
    """Read the skip list a previous run left, if it was made by this music21 version."""
    try:
        data = json.loads((out_dir / SKIPPED_FILE).read_text(encoding="utf-8"))
        if data.get("music21") != _music21_version():
            return {}
        return {k: dict(v) for k, v in data["skipped"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def convert_bach_chorales(
    out_dir: Path,
    workers: int = 2,
    progress: bool = True,
    limit: int | None = None,
    names: Iterable[str] | None = None,
) -> ConversionReport:
    """Convert the music21 Bach chorales to MIDI files in ``out_dir`` (``<name>.mid``).

    Files already in ``out_dir`` are kept as they are, and scores a previous run skipped
    are reported from ``out_dir/_skipped.json`` without parsing them again.

    Args:
        out_dir: Folder for the MIDI files; created if missing.
        workers: Worker processes; 1 or less converts in this process.
        progress: Show a progress bar.
        limit: Take only the first ``limit`` scores (in :func:`bach_chorale_paths` order).
        names: Take only these scores, by MIDI stem (``bwv269``) or file name (``bwv269.mxl``).

    Returns:
        The MIDI files now present and the scores skipped, each with a one-line reason.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = midi_names(bach_chorale_paths())
    selected = sorted(stems.items(), key=lambda kv: kv[1])
    if names is not None:
        wanted = set(names)
        selected = [(p, n) for p, n in selected if n in wanted or p.name in wanted]
    if limit is not None:
        selected = selected[:limit]

    old_skips = _load_skips(out_dir)
    jobs: list[tuple[str, str, str]] = []
    skips: dict[str, dict[str, str]] = {}
    for path, name in selected:
        out = out_dir / f"{name}.mid"
        if out.exists():
            continue
        if name in old_skips:
            skips[name] = old_skips[name]
        else:
            jobs.append((name, str(path), str(out)))

    sources = {name: path.name for path, name in selected}
    for name, reason in _run(jobs, workers, progress):
        if reason is not None:
            skips[name] = {"source": sources[name], "reason": reason}

    chosen = set(sources)
    kept = {k: v for k, v in old_skips.items() if k not in chosen}
    all_skips = dict(sorted({**kept, **skips}.items()))
    if all_skips or (out_dir / SKIPPED_FILE).exists():
        atomic_write_json(
            out_dir / SKIPPED_FILE, {"music21": _music21_version(), "skipped": all_skips}
        )

    written = [out_dir / f"{n}.mid" for _, n in selected if (out_dir / f"{n}.mid").exists()]
    skipped = [(v["source"], v["reason"]) for k, v in sorted(skips.items())]
    return ConversionReport(written=written, skipped=skipped)


def _run(jobs: list[tuple[str, str, str]], workers: int, progress: bool):
    """Yield ``(name, reason or None)`` for every job, in completion order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="Bach chorales to MIDI", unit="score", disable=not progress)
    with bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield _convert_one(job)
                bar.update()
            return
        with multiprocessing.Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(_convert_one, jobs):
                yield result
                bar.update()
