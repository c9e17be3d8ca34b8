"""One piece, every study: key, harmony, structure and melody, as a JSON-ready summary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurl.analysis.chords import QUALITY_NAMES, chord_symbol
from aurl.analysis.harmony import Harmony, HarmonyParams, analyze_harmony
from aurl.analysis.key import PITCH_NAMES, key_name, key_segments
from aurl.analysis.melody import (
    Melody,
    contour_class,
    find_motifs,
    interval_histogram,
    phrase_boundaries,
    scale_of,
    top_voice,
)
from aurl.analysis.piece import Piece, piece_from_score
from aurl.analysis.progressions import (
    chord_spans,
    common_progressions,
    find_cadences,
    transition_counts,
)
from aurl.analysis.structure import (
    Section,
    bar_similarity,
    find_repeats,
    form_label,
    intensity,
    sections,
)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Analysis:
    """The studies of one piece: the JSON summary plus what the plots draw.

    Attributes:
        piece: The analysed notes and bars.
        harmony: Keys and chords per beat.
        similarity: Bar self-similarity matrix.
        sections: Form sections (0-based bars).
        summary: Everything above as plain JSON-ready data (see :func:`analyze_piece`).
    """

    piece: Piece
    harmony: Harmony
    similarity: np.ndarray
    sections: list[Section]
    summary: dict


def analyze_file(path: str | os.PathLike, params: HarmonyParams | None = None) -> Analysis:
    """Read a MIDI file and analyse it.

    Raises:
        MidiError: If the file cannot be read.
        ValueError: If it holds no pitched notes.
    """
    from aurl.midi import read_midi

    score = read_midi(path)
    return analyze_piece(piece_from_score(score, Path(path).stem), params)


def analyze_piece(piece: Piece, params: HarmonyParams | None = None) -> Analysis:
    """Run every study on a piece.

    Returns:
        An :class:`Analysis` whose ``summary`` has the keys ``piece``, ``meter``, ``key``,
        ``harmony``, ``structure`` and ``melody``. Positions are ``{"bar", "beat", "quarter"}``
        with bars numbered as in a score (0 for a pickup).
    """
    harmony = analyze_harmony(piece, params)
    melody = top_voice(piece)
    phrase_starts = phrase_boundaries(melody)
    phrases = list(zip(phrase_starts, np.append(phrase_starts[1:], len(melody)), strict=True))
    sim = bar_similarity(piece)
    repeats = find_repeats(sim)
    parts = sections(sim, repeats)
    summary = {
        "format": FORMAT_VERSION,
        "piece": piece.name,
        "meter": {
            "bars": len(piece.bar_starts),
            "beats": len(harmony.beats),
            "quarters": round(piece.end / piece.steps_per_quarter, 3),
            "pickup_beats": _pickup_beats(piece),
            "notes": len(piece.time),
        },
        "key": _key_summary(piece, harmony),
        "harmony": _harmony_summary(piece, harmony, melody, phrases),
        "structure": _structure_summary(piece, melody, phrases, sim, repeats, parts),
        "melody": _melody_summary(piece, melody, harmony),
    }
    return Analysis(piece, harmony, sim, parts, summary)


def _harmony_summary(piece: Piece, harmony: Harmony, melody: Melody, phrases: list) -> dict:
    """Chord spans (a chord lasts as long as the harmony does, changes on half beats
    included), per-beat labels, progression statistics and cadences at phrase ends."""
    chords, pos = harmony.chords, piece.position
    spans = chord_spans(chords, harmony.local_key)
    fine = harmony.half_beats
    fine_keys = harmony.local_key[np.searchsorted(harmony.beats, fine.starts, side="right") - 1]
    last_notes = [melody.time[b - 1] for _, b in phrases]
    ends = [int(np.searchsorted(harmony.beats, t, side="right") - 1) for t in last_notes]
    cadences = find_cadences(spans, ends, chords.soprano)
    degrees = [s.degree for s in spans]
    return {
        "tactus_beats": harmony.tactus,
        "chords": [
            {
                "start": pos(int(fine.starts[s.first])),
                "beats": _beats(piece, int(fine.starts[s.first]), int(fine.ends[s.end - 1])),
                "symbol": chord_symbol(
                    s.root, QUALITY_NAMES.index(s.quality), int(fine.bass[s.first])
                ),
                "root": PITCH_NAMES[s.root],
                "quality": s.quality,
                "inversion": s.inversion,
                "numeral": s.numeral,
                "key": key_name(s.key),
            }
            for s in chord_spans(fine, fine_keys)
        ],
        "per_beat": {
            "symbol": [
                chord_symbol(int(r), int(q), int(b))
                for r, q, b in zip(chords.root, chords.quality, chords.bass, strict=True)
            ],
            "numeral": harmony.numerals,
            "fit": [round(float(f), 3) for f in chords.fit],
        },
        "progression": degrees,
        "transitions": transition_counts([degrees]),
        "common_progressions": common_progressions([degrees], top=5),
        "cadences": [
            {
                "type": c["type"],
                "position": pos(int(harmony.beats[c["beat"]])),
                "chords": c["chords"],
            }
            for c in cadences
        ],
    }


def _structure_summary(
    piece: Piece, melody: Melody, phrases: list, sim: np.ndarray, repeats: list, parts: list
) -> dict:
    """Form, sections, repeats, phrases, intensity curve and climax, similarity matrix."""
    pos, bar_no = piece.position, piece.first_bar_number
    curve = intensity(piece)
    climax = int(np.argmax(curve["intensity"]))
    return {
        "form": form_label(parts),
        "sections": [
            {
                "label": s.label,
                "start_bar": s.start + bar_no,
                "end_bar": s.end - 1 + bar_no,
                "bars": s.end - s.start,
            }
            for s in parts
        ],
        "repeats": [
            {
                "bars": r.length,
                "first_bar": r.first + bar_no,
                "again_at_bar": r.second + bar_no,
                "similarity": r.similarity,
            }
            for r in repeats[:10]
        ],
        "phrases": [
            {
                "start": pos(int(melody.time[a])),
                "end": pos(int(melody.time[b - 1])),
                "notes": int(b - a),
                "contour": contour_class(melody.pitch[a:b]),
            }
            for a, b in phrases
        ],
        "intensity": {k: [round(float(x), 3) for x in v] for k, v in curve.items()},
        "climax": {
            "bar": climax + bar_no,
            "intensity": round(float(curve["intensity"][climax]), 3),
            "highest_note": pos(int(melody.time[np.argmax(melody.pitch)])),
        },
        "similarity": [[round(float(x), 3) for x in row] for row in sim],
    }


def _beats(piece: Piece, start: int, end: int) -> float:
    """Beats from ``start`` to ``end`` (steps), counted in the meter of the bar at ``start``."""
    bar = max(int(np.searchsorted(piece.bar_starts, start, side="right")) - 1, 0)
    return round((end - start) / int(piece.beat_steps[bar]), 3)


def _pickup_beats(piece: Piece) -> float:
    """Beats before the first full bar (0 without a pickup)."""
    if piece.bar_starts[0] >= 0 or len(piece.bar_starts) < 2:
        return 0
    return round(int(piece.bar_starts[1]) / int(piece.beat_steps[0]), 3)


def _key_summary(piece: Piece, harmony: Harmony) -> dict:
    segments = key_segments(harmony.local_key, harmony.key_margin)
    beats = harmony.beats
    return {
        "global": {
            "name": harmony.key.name,
            "tonic": PITCH_NAMES[harmony.key.tonic],
            "mode": harmony.key.mode,
            "correlation": harmony.key.correlation,
            "confidence": harmony.key.confidence,
        },
        "local": [
            {
                "key": key_name(k),
                "start": piece.position(int(beats[a])),
                "beats": b - a,
                "confidence": m,
            }
            for a, b, k, m in segments
        ],
        "modulations": max(len(segments) - 1, 0),
    }


def _melody_summary(piece: Piece, melody: Melody, harmony: Harmony) -> dict:
    motifs = find_motifs(melody)
    return {
        "notes": len(melody),
        "range": [int(melody.pitch.min()), int(melody.pitch.max())],
        "contour": contour_class(melody.pitch),
        "intervals": interval_histogram(melody),
        "motifs": [
            {
                "intervals": list(m.intervals),
                "count": len(m.starts),
                "positions": [piece.position(int(melody.time[s])) for s in m.starts],
            }
            for m in motifs
        ],
        "scale": scale_of(melody, harmony.key.tonic),
    }
