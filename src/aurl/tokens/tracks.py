"""Tracks in the token stream: which track and program every note has, and their names.

With ``TokenizerConfig.tracks`` >= 1 a piece opens with its track declarations,
``BOS (Track_k Program_p [Voice_v])* Bar ...``, k counting up from 0, and inside the bars
every note names its track (``Position Track_k Pitch Velocity Duration``, the Track token only
where the track changes inside a position). A track's program is fixed by its declaration, so
a continuation keeps the prompt's instruments: the grammar lets a note name only a declared
track, and declarations end at the first Bar. Without tracks, notes name their program
(``Program_p``) and tracks of one program merge.
"""

from __future__ import annotations

import re

import numpy as np

from aurl.midi.arrays import NoteTable
from aurl.midi.gm import program_name
from aurl.tokens.vocab import VOICE_NAMES, TokenType, Vocabulary

# Words of track names that name a voice, per VOICE_NAMES entry (English, Italian, Latin,
# German; matched as whole words, case-insensitively).
_VOICE_WORDS = (
    ("soprano", "sopran", "canto", "cantus", "discantus", "superius", "treble"),
    ("alto", "alt", "altus", "contralto", "contratenor"),
    ("tenor", "tenore"),
    ("bass", "basso", "bassus"),
    ("quinto", "quintus"),
    ("sesto", "sextus"),
    ("voice", "voce", "singstimme", "vox"),
)
_WORD = re.compile(r"[a-z]+")
# Usual ranges of the four voices (MIDI pitch, inclusive).
SATB_RANGES = {"Soprano": (60, 79), "Alto": (55, 74), "Tenor": (48, 67), "Bass": (40, 62)}
# Intervals between two voices (modulo the octave) heard as dissonant: seconds, tritone, sevenths.
DISSONANT = (1, 2, 6, 10, 11)


def voice_of(name: str) -> int:
    """Index in ``VOICE_NAMES`` of the voice a track name names (``"Soprano 2"`` -> 0), or
    -1 when it names none. The first word that names a voice decides."""
    for word in _WORD.findall(name.lower()):
        for v, words in enumerate(_VOICE_WORDS):
            if word in words:
                return v
    return -1


def track_names(programs: list[int], voices: list[int]) -> list[str]:
    """Names for decoded tracks: the voice where one is declared, else the GM program name;
    names that repeat are numbered (``Violin 1``, ``Violin 2``)."""
    base = [VOICE_NAMES[v] if v >= 0 else program_name(p) for p, v in zip(programs, voices,
                                                                          strict=True)]  # fmt: skip
    counts = {n: base.count(n) for n in base}
    seen: dict[str, int] = {}
    names = []
    for n in base:
        seen[n] = seen.get(n, 0) + 1
        names.append(f"{n} {seen[n]}" if counts[n] > 1 else n)
    return names


def assign_tracks(table: NoteTable, limit: int) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """Each note's track in its piece, and each piece's declarations ``(program, voice)``.

    A piece's tracks with notes are numbered in file order. Past ``limit`` tracks, a track
    joins the first kept one of its program, else the last kept one (no note is lost).
    """
    local = np.zeros(len(table.sizes), np.int64)
    headers: list[list[tuple[int, int]]] = []
    first = 0
    for a in table.scores:
        kept: list[tuple[int, int]] = []
        for j, (notes, program) in enumerate(zip(a.tracks, a.programs, strict=True)):
            if not len(notes["time"]):
                continue
            if len(kept) < limit:
                name = a.names[j] if j < len(a.names) else ""
                kept.append((program, voice_of(name)))
                local[first + j] = len(kept) - 1
            else:
                same = [k for k, (p, _) in enumerate(kept) if p == program]
                local[first + j] = same[0] if same else len(kept) - 1
        headers.append(kept)
        first += len(a.tracks)
    return np.repeat(local, table.sizes), headers


def header_end(ids: np.ndarray, vocab: Vocabulary) -> int:
    """Index of the first Bar (the end of BOS and the declarations), or ``len(ids)``."""
    bars = np.flatnonzero(vocab.types[np.asarray(ids, np.int64)] == TokenType.BAR)
    return int(bars[0]) if len(bars) else len(ids)


def declared_tracks(ids: np.ndarray, vocab: Vocabulary) -> tuple[list[int], list[int]]:
    """``(programs, voices)`` of the tracks declared before the first Bar (voice -1 where
    none is named); empty without tracks."""
    ids = np.asarray(ids, np.int64)[: header_end(ids, vocab)]
    programs: list[int] = []
    voices: list[int] = []
    for tok in ids.tolist():
        kind, value = int(vocab.types[tok]), int(vocab.values[tok])
        if kind == TokenType.TRACK:
            programs.append(0)
            voices.append(-1)
        elif kind == TokenType.PROGRAM and programs:
            programs[-1] = value
        elif kind == TokenType.VOICE and voices:
            voices[-1] = value
    return programs, voices


def _last_value(ids: np.ndarray, vocab: Vocabulary, kind: TokenType) -> np.ndarray:
    """The value of the last ``kind`` token at or before every token (-1 before the first)."""
    hit = vocab.types[ids] == kind
    last = np.maximum.accumulate(np.where(hit, np.arange(len(ids)), -1)) if len(ids) else hit
    return np.where(last >= 0, vocab.values[ids[np.maximum(last, 0)]], -1)


def track_in_force(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The track of every token: the last Track token after the declarations (-1 before the
    first, and everywhere without tracks)."""
    ids = np.asarray(ids, np.int64)
    track = _last_value(ids, vocab, TokenType.TRACK)
    track[: header_end(ids, vocab)] = -1
    return track


def program_in_force(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The program of every token: its track's declared program, or without tracks the last
    Program token's (0 before the first, and for a track never declared)."""
    ids = np.asarray(ids, np.int64)
    if not vocab.has_tracks:
        return np.maximum(_last_value(ids, vocab, TokenType.PROGRAM), 0)
    programs = np.array(declared_tracks(ids, vocab)[0] + [0], np.int64)
    track = track_in_force(ids, vocab)
    known = (track >= 0) & (track < len(programs) - 1)
    return programs[np.where(known, track, -1)]
