"""Corpus sources: the files a dataset is built from, and each piece's identity."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aurl.data.corpora import CORPORA, convert_corpus, corpus_dir, get_corpus
from aurl.midi import MIDI_SUFFIXES, midi_files
from aurl.paths import cache_dir

BACH = "bach"


class SourceError(Exception):
    """A corpus that cannot be used (missing folder, no MIDI files)."""


@dataclass
class Source:
    """A corpus: its label, its root folder and its MIDI files (sorted, stable)."""

    label: str
    root: Path
    files: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) before reading
    licence: str = ""  # what is known about using a named corpus; empty for a folder
    as_written: list[tuple[Path, str]] = field(default_factory=list)  # (file, note): see bach.py

    def identity(self, path: Path) -> str:
        """A piece's identity: its path inside the corpus, without the suffix."""
        return path.relative_to(self.root).with_suffix("").as_posix()

    def identities(self) -> list[str]:
        """Every file's :meth:`identity`, in order (by string operations where the path
        plainly starts with the root: pathlib costs more than encoding a small file)."""
        prefix = str(self.root).rstrip(os.sep) + os.sep
        out = []
        for path in self.files:
            text = str(path)
            if text.startswith(prefix):
                out.append(os.path.splitext(text[len(prefix) :])[0])
            else:
                out.append(self.identity(path))
        return out


def folder_source(path: str | Path) -> Source:
    """A corpus from any folder of MIDI files (searched recursively)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise SourceError(f"{root}: no such folder")
    if root.is_file():
        if root.suffix.lower() not in MIDI_SUFFIXES:
            raise SourceError(f"{root}: not a folder or a .mid/.midi/.kar file")
        return Source(root.stem, root.parent, [root])
    files = midi_files(root)
    if not files:
        raise SourceError(f"{root}: no .mid, .midi or .kar files in this folder")
    return Source(root.name or str(root), root, files)


def bach_source(workers: int = 2, progress: bool = True, limit: int | None = None) -> Source:
    """The Bach chorales that ship in music21, converted to MIDI once and cached.

    ``limit`` takes only the first scores (in name order), for a quick try.
    """
    from aurl.data.bach import convert_bach_chorales

    out = cache_dir() / "sources" / BACH
    report = convert_bach_chorales(out, workers=workers, progress=progress, limit=limit)
    # Three chorales ship twice (MusicXML and Humdrum); keep one copy so that no piece can
    # sit in two splits at once.
    stems = {p.stem for p in report.written}
    files = [p for p in report.written if not (p.stem.endswith("-krn") and p.stem[:-4] in stems)]
    notes = [(path, note) for path, note in report.as_written if path in files]
    return Source(BACH, out, sorted(files), list(report.skipped), get_corpus(BACH).licence, notes)


def corpus_source(
    name: str, workers: int = 2, progress: bool = True, limit: int | None = None
) -> Source:
    """A named corpus from :mod:`aurl.data.corpora`, converted to MIDI once and cached.

    Converted files are kept as they are written, so an interrupted conversion goes on
    where it stopped. ``limit`` takes only the first scores (in name order), for a quick try.

    Raises:
        SourceError: no corpus has that name, or none of its scores could be converted.
    """
    if name == BACH:
        return bach_source(workers, progress, limit)
    if name not in CORPORA:
        raise SourceError(f"no corpus named {name!r}; named corpora: {', '.join(CORPORA)}")
    out = corpus_dir(name)
    report = convert_corpus(name, out, workers=workers, progress=progress, limit=limit)
    if not report.written:
        raise SourceError(f"{name}: no score could be converted to MIDI")
    return Source(name, out, sorted(report.written), list(report.skipped), CORPORA[name].licence,
                  list(report.as_written))  # fmt: skip


def resolve_source(
    name_or_path: str | None,
    workers: int = 2,
    progress: bool = True,
    limit: int | None = None,
) -> Source:
    """Turn a corpus name or a path into a :class:`Source`.

    ``None`` gives the default corpus (``bach``); a name from :data:`aurl.data.corpora.CORPORA`
    gives that corpus (a folder of the same name needs a path such as ``./essen``);
    anything else is a folder or a MIDI file. ``limit`` applies to named corpora only.

    Raises:
        SourceError: the folder does not exist or holds no MIDI files.
    """
    if name_or_path is None or name_or_path in CORPORA:
        return corpus_source(name_or_path or BACH, workers, progress, limit)
    if not Path(name_or_path).expanduser().exists() and "/" not in name_or_path:
        raise SourceError(
            f"{name_or_path}: no such folder, and no corpus of that name "
            f"(named corpora: {', '.join(CORPORA)})"
        )
    return folder_source(name_or_path)
