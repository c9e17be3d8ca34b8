"""Corpus sources: the files a dataset is built from, and each piece's identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aurl.paths import cache_dir

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
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

    def identity(self, path: Path) -> str:
        """A piece's identity: its path inside the corpus, without the suffix."""
        return path.relative_to(self.root).with_suffix("").as_posix()


def midi_files(root: Path) -> list[Path]:
    """Every .mid/.midi/.kar file under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


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


def bach_source(workers: int = 2, progress: bool = True) -> Source:
    """The Bach chorales that ship in music21, converted to MIDI once and cached."""
    from aurl.data.bach import convert_bach_chorales

    out = cache_dir() / "sources" / BACH
    report = convert_bach_chorales(out, workers=workers, progress=progress)
    # Three chorales ship twice (MusicXML and Humdrum); keep one copy so that no piece can
    # sit in two splits at once.
    stems = {p.stem for p in report.written}
    files = [p for p in report.written if not (p.stem.endswith("-krn") and p.stem[:-4] in stems)]
    return Source(BACH, out, sorted(files), list(report.skipped))


def resolve_source(name_or_path: str | None, workers: int = 2, progress: bool = True) -> Source:
    """``None`` or ``"bach"`` gives the default corpus; anything else is a folder or file."""
    if name_or_path in (None, BACH):
        return bach_source(workers, progress)
    return folder_source(name_or_path)
