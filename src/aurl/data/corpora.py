"""Named corpora: the collections that ship inside ``music21``, each with its licence note.

A corpus is a list of scores (:class:`~aurl.data.bach.ScoreRef`): whole score files, or
single tunes of ABC files that hold many tunes. Every corpus is converted to MIDI by the
same cached worker-pool path as the Bach chorales (:func:`aurl.data.bach.convert_scores`).
Listing a corpus reads music21's corpus folder directly, without importing music21.

Licence notes say only what music21's own files state (``corpus/license.txt``, the licence
files and headers inside each collection); where they state nothing, the note says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

from aurl.data.bach import (
    ConversionReport,
    ScoreRef,
    bach_chorale_scores,
    convert_scores,
    music21_corpus_dir,
)
from aurl.paths import cache_dir

_GENERAL = (
    "music21 says its corpus is distributed with the encoders' permission and that some "
    "encodings may not be used commercially; see music21's corpus documentation."
)
_X_LINE = re.compile(r"^[ \t]*X:", re.MULTILINE)
_FIELD = re.compile(r"^\s*([A-Za-z]):")
# ABC fields that change the music; the others (title, source, notes...) are metadata.
_MUSIC_FIELDS = frozenset("KLMPQUV")


@dataclass(frozen=True)
class Corpus:
    """A named collection of scores.

    Attributes:
        name: The name ``resolve_source`` accepts (``palestrina``).
        description: One line: what the collection holds.
        licence: What music21's files state about its use.
        scores: Lists the collection's scores (cheap: reads files, parses no music).
    """

    name: str
    description: str
    licence: str
    scores: Callable[[], list[ScoreRef]]


class CorpusInfo(NamedTuple):
    """One row of :func:`list_corpora`."""

    name: str
    description: str
    licence: str
    scores: int


def abc_tunes(text: str) -> list[tuple[str, str]]:
    """Split the text of an ABC file into its tunes.

    A tune runs from its ``X:`` line to the next one. The file header (the field and
    comment lines before the first ``X:``) applies to every tune, so it is put in front of
    each. A file without any ``X:`` line is one tune.

    Returns:
        ``(reference number as written, text of the tune)`` per tune, in file order.
    """
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [("", text)]
    header = [
        line
        for line in text[: starts[0]].splitlines()
        if _FIELD.match(line) or line.startswith("%")
    ]
    prefix = "".join(f"{line}\n" for line in header)
    tunes = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        block = text[start:end]
        number = block.split("\n", 1)[0].split(":", 1)[1].strip()
        tunes.append((number, prefix + block))
    return tunes


def abc_music_key(tune: str) -> tuple[str, ...]:
    """The lines of a tune that carry music: two tunes with the same key sound the same.

    Titles, sources, notes, comments and the reference number are left out.
    """
    key = []
    for line in tune.splitlines():
        line = line.strip()
        field = _FIELD.match(line)
        if not line or line.startswith("%") or (field and field.group(1) not in _MUSIC_FIELDS):
            continue
        key.append(line)
    return tuple(key)


def abc_scores(paths: Iterable[Path], root: Path) -> list[ScoreRef]:
    """One :class:`ScoreRef` per tune of the ABC files, dropping tunes heard before.

    A file with one tune is named by its path inside ``root`` (``AcaciaReel``); a tune of
    a file with several is named ``<file>/<number>`` (``altdeu10/0001``). A tune whose
    music repeats an earlier one (:func:`abc_music_key`) is left out, so that one tune
    can never sit in two splits.
    """
    refs: list[ScoreRef] = []
    heard: set[tuple[str, ...]] = set()
    for path in sorted(paths):
        rel = path.relative_to(root)
        tunes = abc_tunes(path.read_text(encoding="utf-8", errors="replace"))
        used: set[str] = set()
        for number, text in tunes:
            key = abc_music_key(text)
            if key in heard:
                continue
            heard.add(key)
            if len(tunes) == 1:
                name = rel.with_suffix("").as_posix()
            else:
                name = _unique(f"{rel.with_suffix('').as_posix()}/{_tune_stem(number)}", used)
            refs.append(ScoreRef(name, path, f"{rel.as_posix()} X:{number}", text))
    return refs


def _tune_stem(number: str) -> str:
    """``1`` becomes ``0001`` (so names sort in file order); other text is made file-safe."""
    if number.isdigit():
        return f"{int(number):04d}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", number).strip("._") or "tune"


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{name}-{n}"
        n += 1
    used.add(candidate)
    return candidate


def file_scores(paths: Iterable[Path], root: Path) -> list[ScoreRef]:
    """One :class:`ScoreRef` per score file, named by its path inside ``root``.

    Where a folder holds the same score in two formats (``movement1.mxl`` and
    ``movement1.krn``), only the MusicXML file is kept.
    """
    order = {".mxl": 0, ".musicxml": 1, ".xml": 2}
    refs: dict[str, ScoreRef] = {}
    for path in sorted(paths, key=lambda p: (order.get(p.suffix.lower(), 9), p)):
        rel = path.relative_to(root)
        name = rel.with_suffix("").as_posix()
        refs.setdefault(name, ScoreRef(name, path, rel.as_posix()))
    return sorted(refs.values(), key=lambda r: r.name)


def _listed(
    folders: tuple[str, ...],
    suffixes: tuple[str, ...],
    exclude: Callable[[Path], bool] = lambda p: False,
) -> list[Path]:
    """Score files under music21's corpus ``folders`` with one of ``suffixes``, recursively."""
    base = music21_corpus_dir()
    return sorted(
        p
        for folder in folders
        for p in (base / folder).rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and not exclude(p)
    )


def _files_of(folders: tuple[str, ...], exclude: Callable[[Path], bool] = lambda p: False):
    paths = _listed(folders, (".mxl", ".musicxml", ".xml", ".krn"), exclude)
    return file_scores(paths, music21_corpus_dir())


def _tunes_of(folder: str, exclude: Callable[[Path], bool] = lambda p: False):
    return abc_scores(_listed((folder,), (".abc",), exclude), music21_corpus_dir() / folder)


def _not_quartet(path: Path) -> bool:
    return path.parent.name == "k545"  # a piano sonata in music21's mozart folder


def _essen_test_file(path: Path) -> bool:
    return path.name.startswith("test")  # music21's test files repeat tunes of the others


def _palestrina_scores() -> list[ScoreRef]:
    return file_scores(_listed(("palestrina",), (".krn",)), music21_corpus_dir() / "palestrina")


CORPORA: dict[str, Corpus] = {
    c.name: c
    for c in (
        Corpus(
            "bach",
            "J. S. Bach: four-part chorales (MusicXML and Humdrum); the default corpus",
            "Bach's music is in the public domain. No licence is stated in the files; three "
            "Humdrum files say 'Copyright 1994, Center for Computer Assisted Research in the "
            f"Humanities'. {_GENERAL}",
            bach_chorale_scores,
        ),
        Corpus(
            "palestrina",
            "Palestrina: mass movements for four to six voices (Humdrum)",
            "Encodings 'Copyright 2000, John Miller'. Every file states it 'must be "
            "accompanied by the licensing agreement' at http://www.music-cog.ohio-state.edu/"
            "HumdrumDatabases/Palestrina/license.txt, which music21 does not ship, so its "
            f"terms are unknown here. {_GENERAL}",
            _palestrina_scores,
        ),
        Corpus(
            "quartets",
            "Beethoven, Haydn and Mozart: string quartet movements (MusicXML); "
            "one folder per composer",
            "The composers' music is in the public domain. No licence is stated in the "
            f"encodings. {_GENERAL}",
            partial(_files_of, ("beethoven", "haydn", "mozart"), _not_quartet),
        ),
        Corpus(
            "monteverdi",
            "Monteverdi: five-voice madrigals, books 3 to 5 (MusicXML)",
            "Monteverdi's music is in the public domain. No licence is stated in the "
            "encodings; three carry a garbled 'Ut Orpheus Edizioni 2003' copyright line. "
            f"{_GENERAL}",
            partial(_files_of, ("monteverdi",)),
        ),
        Corpus(
            "essen",
            "Essen Folksong Collection: folk melodies, mostly German and other European, some "
            "Chinese (ABC)",
            "Non-commercial use only. music21's essenFolksong/license.txt: the database's "
            "legal status is unclear; Ewa Dahlig-Turek gave permission for non-commercial "
            "distribution and use in music21; ABC encodings by Seymour Schlien, distributed "
            "with his permission.",
            partial(_tunes_of, "essenFolksong", _essen_test_file),
        ),
        Corpus(
            "ryans-mammoth",
            "Ryan's Mammoth Collection: fiddle tunes, reels and hornpipes (ABC)",
            "No licence is stated in the files (transcriptions contributed by Ray Davies "
            f"and others). {_GENERAL}",
            partial(_tunes_of, "ryansMammoth"),
        ),
        Corpus(
            "oneills",
            "O'Neill's collection (music21's oneills1850): Irish airs and dance tunes (ABC)",
            "No licence is stated in the files (transcriptions by Norbert Paap, Henrik "
            f"Norbeck, Bob Safranek and others). {_GENERAL}",
            partial(_tunes_of, "oneills1850"),
        ),
        Corpus(
            "airds-airs",
            "Aird's Airs (six books, from 1778): Scottish, English, Irish and other airs for "
            "fife, violin or flute (ABC)",
            f"No licence is stated in the files (transcribed by Jack Campin, 2009). {_GENERAL}",
            partial(_tunes_of, "airdsAirs"),
        ),
    )
}


def corpus_names() -> list[str]:
    """The names of the named corpora, the default (``bach``) first."""
    return list(CORPORA)


def get_corpus(name: str) -> Corpus:
    """The corpus called ``name``.

    Raises:
        KeyError: no corpus has that name; the message lists the names.
    """
    try:
        return CORPORA[name]
    except KeyError:
        raise KeyError(f"no corpus named {name!r}; named corpora: {', '.join(CORPORA)}") from None


def corpus_dir(name: str) -> Path:
    """Where a corpus's MIDI files are cached: ``$AURL_CACHE_DIR/sources/<name>``."""
    return cache_dir() / "sources" / name


def convert_corpus(
    name: str,
    out_dir: Path | None = None,
    workers: int = 2,
    progress: bool = True,
    limit: int | None = None,
) -> ConversionReport:
    """Convert a named corpus to MIDI files, cached; scores music21 cannot convert are skipped.

    Args:
        name: A name from :data:`CORPORA`.
        out_dir: Folder for the MIDI files; default :func:`corpus_dir`.
        workers: Worker processes; 1 or less converts in this process.
        progress: Show a progress bar.
        limit: Take only the first ``limit`` scores (in name order).

    Returns:
        The MIDI files now present and the scores skipped, each with a one-line reason.
    """
    corpus = get_corpus(name)
    scores = sorted(corpus.scores(), key=lambda s: s.name)
    if limit is not None:
        scores = scores[:limit]
    out = corpus_dir(name) if out_dir is None else Path(out_dir)
    return convert_scores(scores, out, workers, progress, desc=f"{name} to MIDI")


def list_corpora() -> list[CorpusInfo]:
    """Every named corpus: name, description, licence note and number of scores."""
    return [CorpusInfo(c.name, c.description, c.licence, len(c.scores())) for c in CORPORA.values()]
