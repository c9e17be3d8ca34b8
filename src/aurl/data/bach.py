"""Scores that ship inside ``music21``, converted to MIDI; the Bach chorales are the default.

Each score is parsed with music21, its repeats are expanded, and it is written as a MIDI
file with one track per voice; a score whose repeat marks music21 finds badly formed is
written as notated, each bar once, and reported so. A score is either a whole file
(MusicXML, Humdrum, ABC) or one tune of an ABC file that holds many. Conversion runs in
worker processes; a score that fails is reported and skipped, and the run goes on. Converted files are cached: a second call converts nothing. Other
collections use the same machinery through :mod:`aurl.data.corpora`.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import multiprocessing
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aurl.fileio import atomic_write_bytes, atomic_write_json

SKIPPED_FILE = "_skipped.json"  # also lists the scores converted as written
CONVERTER_VERSION = 2  # 2: badly formed repeats are written as notated instead of skipped
AS_WRITTEN = "repeats too badly formed for music21 to expand; each bar played once"

# Files in music21's ``corpus/bach`` folder that are not chorales.
NON_CHORALES = frozenset({"bwv846"})  # Well-Tempered Clavier I, Prelude in C major

_SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")

# Objects music21's MIDI export moves to the conductor track; it fails if one is shared.
_CONDUCTOR_CLASSES = ("MetronomeMark", "TimeSignature", "KeySignature")


@dataclass
class ConversionReport:
    """What a conversion left in its output folder.

    Attributes:
        written: MIDI files now present in the output folder, cached ones included.
        skipped: ``(score label, one-line reason)`` for every score that could not be converted.
        as_written: ``(MIDI file, note)`` for every written score whose repeats could not be
            expanded (so it was converted as notated).
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    as_written: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreRef:
    """One score to convert: a whole score file, or one tune of a multi-tune ABC file.

    Attributes:
        name: Path of the MIDI file inside the output folder, without ``.mid``
            (``bwv269`` or ``altdeu10/0001``).
        path: The score file.
        label: How reports name the score (``bwv277.krn``, ``altdeu10.abc X:1``).
        tune: ABC text of the one tune to convert, or ``None`` to convert the whole file.
    """

    name: str
    path: Path
    label: str
    tune: str | None = None


def music21_corpus_dir() -> Path:
    """Return music21's ``corpus`` folder without importing music21 (which takes seconds).

    Raises:
        ModuleNotFoundError: music21 is not installed.
    """
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("music21 is not installed; it ships the corpora")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def bach_chorale_paths() -> list[Path]:
    """Return the Bach chorale score files that ship inside music21, sorted by file name.

    These are the score files of ``music21.corpus.getComposer("bach")`` that sit directly
    in music21's ``corpus/bach`` folder (the Roman-numeral analyses in ``choraleAnalyses``
    are not scores), less known non-chorales. The folder is listed directly so that
    music21 need not be imported (which keeps a cached second run near-instant).
    """
    folder = music21_corpus_dir() / "bach"
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


def chorale_to_midi_bytes(path: str | Path) -> tuple[bytes, str | None]:
    """Parse one score file with music21, expand its repeats, and return it as MIDI bytes,
    with a note if its repeats could not be expanded (None otherwise).

    Works for any file music21 reads (MusicXML, Humdrum, a one-tune ABC file). Each part
    becomes its own MIDI track, after a conductor track with tempo, time and key
    signatures. Repeats are expanded by music21's MIDI export itself, which calls
    ``expandRepeats()`` on any score with measures; calling it here as well would only
    copy the score once more (about 30% slower, byte-identical output). A score whose
    repeats cannot be expanded (music21's ``ExpanderException``) loses its repeat marks and
    is written as notated. Lyrics are dropped: they carry no music and would read back as
    extra note-less tracks.

    Raises:
        Exception: whatever music21 raises for a score it cannot read or convert.
    """
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _score_to_midi_bytes(converter.parse(str(path), forceSource=True))


def abc_tune_to_midi_bytes(text: str) -> tuple[bytes, str | None]:
    """Parse the ABC text of one tune with music21 and return it as MIDI bytes, with a note
    if its repeats could not be expanded.

    The conversion is the same as :func:`chorale_to_midi_bytes`.

    Raises:
        Exception: whatever music21 raises for a tune it cannot read or convert.
    """
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _score_to_midi_bytes(converter.parseData(text, format="abc"))


def _score_to_midi_bytes(score) -> tuple[bytes, str | None]:
    from music21 import midi, repeat, stream

    if isinstance(score, stream.Opus):  # an ABC file with several tunes: take the first
        score = score.scores.first()
    for note in score.recurse().notesAndRests:
        note.lyrics = []
    _unshare_conductor_objects(score)
    try:
        return midi.translate.music21ObjectToMidiFile(score).writestr(), None
    except repeat.ExpanderException:
        _drop_repeat_marks(score)
        return midi.translate.music21ObjectToMidiFile(score).writestr(), AS_WRITTEN


def _drop_repeat_marks(score) -> None:
    """Remove repeat barlines, endings and jumps (segno, coda, da capo ...), in place."""
    from music21 import bar, repeat, spanner, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")
    marks = (repeat.RepeatExpression, spanner.RepeatBracket)
    for element in list(score.recurse().getElementsByClass(marks)):
        element.activeSite.remove(element)
    for bracket in list(score.spannerBundle.getByClass(spanner.RepeatBracket)):
        score.spannerBundle.remove(bracket)


def _unshare_conductor_objects(score) -> None:
    """Give every measure its own tempo, time and key objects.

    music21's ABC reader can put one ``TimeSignature`` object into two measures (when it
    splits an overfull bar), and its MIDI export then fails with "already found in this
    Stream". Copying the second occurrence changes nothing else.
    """
    seen: set[int] = set()
    for inner in score.recurse(streamsOnly=True, includeSelf=True):
        for element in list(inner.getElementsByClass(_CONDUCTOR_CLASSES)):
            if id(element) in seen:
                inner.replace(element, copy.deepcopy(element))
            else:
                seen.add(id(element))


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _convert_one(job: tuple[str, str, str | None, str]) -> tuple[str, str | None, str | None]:
    """Convert one score to ``out``; return ``(name, None, note)`` or ``(name, reason,
    None)``. Never raises."""
    name, src, tune, out = job
    try:
        data, note = chorale_to_midi_bytes(src) if tune is None else abc_tune_to_midi_bytes(tune)
        atomic_write_bytes(out, data)
    except Exception as exc:  # one bad score must never stop the run
        return name, _one_line(exc), None
    return name, None, note


def _music21_version() -> str:
    return importlib.metadata.version("music21")


def _load_skips(out_dir: Path) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """The skipped and the as-written scores a previous run listed, if it ran this music21
    version and this converter (empty otherwise: the skipped scores are tried again)."""
    try:
        data = json.loads((out_dir / SKIPPED_FILE).read_text(encoding="utf-8"))
        if data.get("music21") != _music21_version():
            return {}, {}
        if data.get("converter") != CONVERTER_VERSION:
            return {}, {}
        skipped = {k: dict(v) for k, v in data["skipped"].items()}
        return skipped, {k: dict(v) for k, v in data.get("as_written", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}, {}


def convert_scores(
    scores: Iterable[ScoreRef],
    out_dir: Path,
    workers: int = 2,
    progress: bool = True,
    desc: str = "Scores to MIDI",
) -> ConversionReport:
    """Convert scores to MIDI files in ``out_dir`` (``<name>.mid``), skipping failures.

    Files already in ``out_dir`` are kept as they are, and scores a previous run skipped
    are reported from ``out_dir/_skipped.json`` without parsing them again.

    Args:
        scores: The scores, each with a name unique among them.
        out_dir: Folder for the MIDI files; created if missing.
        workers: Worker processes; 1 or less converts in this process.
        progress: Show a progress bar.
        desc: Label of the progress bar.

    Returns:
        The MIDI files now present (in name order) and the scores skipped, each with a
        one-line reason.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    selected = sorted(scores, key=lambda s: s.name)
    old_skips, old_notes = _load_skips(out_dir)
    jobs: list[tuple[str, str, str | None, str]] = []
    skips: dict[str, dict[str, str]] = {}
    notes: dict[str, dict[str, str]] = {}
    for score in selected:
        out = out_dir / f"{score.name}.mid"
        if out.exists():
            if score.name in old_notes:
                notes[score.name] = old_notes[score.name]
            continue
        if score.name in old_skips:
            skips[score.name] = old_skips[score.name]
        else:
            jobs.append((score.name, str(score.path), score.tune, str(out)))

    labels = {score.name: score.label for score in selected}
    for name, reason, note in _run(jobs, workers, progress, desc):
        if reason is not None:
            skips[name] = {"source": labels[name], "reason": reason}
        elif note is not None:
            notes[name] = {"source": labels[name], "note": note}

    # Entries of scores outside this selection stay for the next run that asks for them.
    all_skips = dict(
        sorted(({k: v for k, v in old_skips.items() if k not in labels} | skips).items())
    )
    all_notes = dict(
        sorted(({k: v for k, v in old_notes.items() if k not in labels} | notes).items())
    )
    if all_skips or all_notes or (out_dir / SKIPPED_FILE).exists():
        atomic_write_json(out_dir / SKIPPED_FILE, {
            "music21": _music21_version(), "converter": CONVERTER_VERSION,
            "skipped": all_skips, "as_written": all_notes,
        })  # fmt: skip

    written = [out_dir / f"{s.name}.mid" for s in selected if (out_dir / f"{s.name}.mid").exists()]
    skipped = [(v["source"], v["reason"]) for k, v in sorted(skips.items())]
    as_written = [(out_dir / f"{k}.mid", v["note"]) for k, v in sorted(notes.items())]
    return ConversionReport(written=written, skipped=skipped, as_written=as_written)


def bach_chorale_scores() -> list[ScoreRef]:
    """Return every Bach chorale as a :class:`ScoreRef`, named by :func:`midi_names`."""
    return [
        ScoreRef(name, path, path.name) for path, name in midi_names(bach_chorale_paths()).items()
    ]


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
        limit: Take only the first ``limit`` scores (in MIDI name order).
        names: Take only these scores, by MIDI stem (``bwv269``) or file name (``bwv269.mxl``).

    Returns:
        The MIDI files now present and the scores skipped, each with a one-line reason.
    """
    selected = sorted(bach_chorale_scores(), key=lambda s: s.name)
    if names is not None:
        wanted = set(names)
        selected = [s for s in selected if s.name in wanted or s.path.name in wanted]
    if limit is not None:
        selected = selected[:limit]
    return convert_scores(selected, out_dir, workers, progress, desc="Bach chorales to MIDI")


def _run(
    jobs: list[tuple[str, str, str | None, str]], workers: int, progress: bool, desc: str
) -> Iterator[tuple[str, str | None, str | None]]:
    """Yield ``(name, reason or None, note or None)`` for every job, in completion order."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="score", disable=not progress)
    with bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield _convert_one(job)
                bar.update()
            return
        with multiprocessing.Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(
                _convert_one, jobs, chunksize=_chunksize(jobs, workers)
            ):
                yield result
                bar.update()


def _chunksize(jobs: list, workers: int) -> int:
    """Small chunks for a few slow scores; larger ones for thousands of quick tunes."""
    return max(1, min(16, len(jobs) // (workers * 32)))
