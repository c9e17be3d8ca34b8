"""Whether a long piece holds together, window by window.

For a piece of many bars: the share of its beats in its main key (the key analysis), the
share of its phrase ends that make a cadence, the longest stretch of bars that repeats an
earlier stretch verbatim (a loop), and its features in every window of ``bars`` bars, to be
compared with the same windows of the test set (a piece that drifts away from the music it
learnt shows falling overlap in its later windows).
"""

from __future__ import annotations

import numpy as np

from aurl.analysis.harmony import analyze_harmony
from aurl.analysis.melody import phrase_boundaries, top_voice
from aurl.analysis.piece import Piece, piece_from_score
from aurl.analysis.progressions import chord_spans, find_cadences
from aurl.evaluate.compare import compare_sets
from aurl.evaluate.features import is_scalar, set_features
from aurl.evaluate.notes import Notes
from aurl.tokens import TokenType, Vocabulary

WINDOW_BARS = 16
NOTE_TYPES = [TokenType.POSITION, TokenType.PROGRAM, TokenType.TRACK, TokenType.PITCH,
              TokenType.VELOCITY, TokenType.DURATION]  # fmt: skip


def window_notes(notes: Notes, first: int, count: int) -> Notes:
    """Bars ``first`` to ``first + count - 1`` of a piece as a piece of its own (times from
    the window's first bar line)."""
    starts = notes.bar_starts
    begin = starts[first]
    end = starts[first + count] if first + count < len(starts) else np.iinfo(np.int64).max
    keep = (notes.time >= begin) & (notes.time < end)
    return Notes(notes.time[keep] - begin, notes.duration[keep], notes.pitch[keep],
                 notes.velocity[keep], notes.program[keep],
                 starts[first : first + count] - begin, notes.steps_per_quarter)  # fmt: skip


def windows(notes: Notes, bars: int = WINDOW_BARS) -> list[Notes]:
    """Consecutive windows of ``bars`` bars (the last one only if it is whole)."""
    return [window_notes(notes, a, bars) for a in range(0, notes.num_bars - bars + 1, bars)]


def longest_repeat(ids: np.ndarray, vocab: Vocabulary) -> int:
    """The most consecutive bars that repeat an earlier run of bars note for note (their
    Position, Program, Pitch, Velocity and Duration tokens; runs that overlap count, and so
    do empty bars)."""
    ids = np.asarray(ids)
    types = vocab.types[ids]
    ids, types = (
        ids[np.isin(types, NOTE_TYPES) | (types == TokenType.BAR)],
        types[np.isin(types, NOTE_TYPES) | (types == TokenType.BAR)],
    )
    cuts = np.flatnonzero(types == TokenType.BAR)
    ends = [*cuts[1:], len(ids)]
    bars = [hash(ids[a + 1 : b].tobytes()) for a, b in zip(cuts, ends, strict=True)]
    n, best = len(bars), 0
    run = np.zeros(n + 1, np.int64)  # run[j]: matching bars ending at (i, j), row by row
    for i in range(n):
        new = np.zeros(n + 1, np.int64)
        for j in range(i + 1, n):
            if bars[i] == bars[j]:
                new[j + 1] = run[j] + 1
        best = max(best, int(new.max()))
        run = new
    return best


def key_and_cadences(piece: Piece, bars: int = WINDOW_BARS) -> dict:
    """Per window of ``bars`` bars: the share of beats in the piece's main key and the share
    of phrase ends that form a cadence; and the same over the whole piece."""
    harmony = analyze_harmony(piece)
    main = harmony.key.index
    in_key = harmony.local_key == main
    melody = top_voice(piece)
    starts = phrase_boundaries(melody)
    ends = np.append(starts[1:], len(melody)) - 1
    end_times = melody.time[ends]
    end_beats = [int(np.searchsorted(harmony.beats, t, side="right") - 1) for t in end_times]
    spans = chord_spans(harmony.chords, harmony.local_key)
    cadence_beats = {c["beat"] for c in find_cadences(spans, end_beats, harmony.chords.soprano)}
    span_first = np.array([s.first for s in spans]) if spans else np.zeros(0, np.int64)
    arrived = np.array([_arrival(span_first, b) in cadence_beats for b in end_beats], bool)
    out = {"key": harmony.key.name, "main_key_share": float(in_key.mean()),
           "cadence_share": float(arrived.mean()) if len(arrived) else None, "windows": []}  # fmt: skip
    bar_starts = piece.bar_starts
    for a in range(0, len(bar_starts) - bars + 1, bars):
        lo = bar_starts[a]
        hi = bar_starts[a + bars] if a + bars < len(bar_starts) else np.iinfo(np.int64).max
        beats = (harmony.beats >= lo) & (harmony.beats < hi)
        phrases = (end_times >= lo) & (end_times < hi)
        out["windows"].append({
            "first_bar": a + 1,
            "main_key_share": float(in_key[beats].mean()) if beats.any() else None,
            "phrase_ends": int(phrases.sum()),
            "cadence_share": float(arrived[phrases].mean()) if phrases.any() else None,
        })  # fmt: skip
    return out


def _arrival(span_first: np.ndarray, beat: int) -> int:
    """The first beat of the chord span that holds ``beat`` (where a cadence is recorded)."""
    i = int(np.searchsorted(span_first, beat, side="right") - 1)
    return int(span_first[i]) if i >= 0 else -1


def window_overlap(pieces: list[Notes], reference: list[Notes], bars: int = WINDOW_BARS
                   ) -> list[dict]:  # fmt: skip
    """For every window position (bars 1-16, 17-32, ...) over the generated ``pieces``: the
    mean overlapping area of the scalar features of that window against all ``bars``-bar
    windows of the ``reference`` pieces."""
    ref = set_features([w for notes in reference for w in windows(notes, bars)])
    per_piece = [windows(notes, bars) for notes in pieces]
    out = []
    for k in range(min(len(w) for w in per_piece)):
        gen = set_features([w[k] for w in per_piece])
        scores = compare_sets({n: v for n, v in gen.items() if is_scalar(v)}, ref)
        oas = [s["oa"] for s in scores.values() if s["oa"] is not None]
        out.append({"first_bar": k * bars + 1, "mean_oa": float(np.mean(oas)) if oas else None,
                    "features": {n: s["oa"] for n, s in scores.items()}})  # fmt: skip
    return out


def long_piece_report(ids: list[np.ndarray], notes: list[Notes], scores: list,
                      reference: list[Notes], vocab: Vocabulary) -> dict:  # fmt: skip
    """Every measure above over a set of long pieces: per piece (key, cadences, loops) and per
    window position (feature overlap with the reference), with the first and last windows
    side by side."""
    per_piece = []
    for i, (piece_ids, score) in enumerate(zip(ids, scores, strict=True)):
        study = key_and_cadences(piece_from_score(score, f"piece-{i}"))
        study["longest_repeat_bars"] = longest_repeat(piece_ids, vocab)
        study["bars"] = int((vocab.types[piece_ids] == TokenType.BAR).sum())
        per_piece.append(study)
    overlap = window_overlap(notes, reference)
    edge = lambda k: {  # noqa: E731
        "mean_oa": overlap[k]["mean_oa"] if overlap else None,
        "main_key_share": _mean([p["windows"][k]["main_key_share"] for p in per_piece
                                 if p["windows"]]),
        "cadence_share": _mean([p["windows"][k]["cadence_share"] for p in per_piece
                                if p["windows"]]),
    }  # fmt: skip
    return {
        "pieces": per_piece,
        "windows": overlap,
        "first": edge(0),
        "last": edge(-1),
        "main_key_share": _mean([p["main_key_share"] for p in per_piece]),
        "cadence_share": _mean([p["cadence_share"] for p in per_piece]),
        "longest_repeat_bars": max(p["longest_repeat_bars"] for p in per_piece),
    }


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
