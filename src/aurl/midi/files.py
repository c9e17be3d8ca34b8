"""Finding MIDI files in folders."""

from __future__ import annotations

from pathlib import Path

MIDI_SUFFIXES = (".mid", ".midi", ".kar")


def midi_files(root: Path) -> list[Path]:
    """Every .mid/.midi/.kar file under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
