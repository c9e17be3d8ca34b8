"""The control values of a training piece: its key and, bar by bar, its chord (from the
analysis), its density, polyphony and register (from its notes); written into its ids as
control tokens (see :mod:`aurl.tokens.controls`)."""

from __future__ import annotations

import numpy as np

from aurl.analysis.chords import QUALITY_NAMES
from aurl.analysis.harmony import analyze_harmony
from aurl.analysis.piece import Piece, beat_steps_of, pitched_notes
from aurl.tokens import TokenType, Vocabulary
from aurl.tokens.controls import bar_values, chord_value, insert_controls
from aurl.tokens.decode import decode
from aurl.tokens.grammar import bar_starts

T = TokenType
# Bumped when the analysis behind the labels changes, so prepared data with controls is
# labelled again (2: local keys with Temperley's profile, a global key weighing its opening;
# 3: chord weights chosen again with the psalms among the tuning sets).
LABELS_VERSION = 3


def with_controls(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """``ids`` with the piece's Key and every bar's Density, Polyphony, Register and Chord
    (none for an empty bar; no Key or Chord for a piece without pitched notes)."""
    bars = bar_values(ids, vocab)
    piece = analysis_piece(ids, vocab)
    key, chords = -1, np.full(len(bars[T.DENSITY]), -1, np.int64)
    if piece is not None and len(piece.time):
        harmony = analyze_harmony(piece)
        key = harmony.key.index
        chords = bar_chords(harmony.half_beats, piece.bar_starts, piece.end)
    return insert_controls(ids, vocab, {T.KEY: key}, {**bars, T.CHORD: chords})


def bar_chords(chords, bar_starts: np.ndarray, end: int) -> np.ndarray:
    """The Chord value of every bar: the (root, quality) sounding longest in it (-1 where
    no chord sounds)."""
    ends = np.append(bar_starts[1:], max(end, int(bar_starts[-1]) + 1))
    out = np.full(len(bar_starts), -1, np.int64)
    seg_end = np.append(chords.starts[1:], max(end, int(chords.starts[-1]) + 1))
    for b, (lo, hi) in enumerate(zip(bar_starts.tolist(), ends.tolist(), strict=True)):
        length = np.clip(np.minimum(seg_end, hi) - np.maximum(chords.starts, lo), 0, None)
        ok = (length > 0) & (chords.root >= 0)
        if not ok.any():
            continue
        value = np.where(ok, chords.quality * 12 + chords.root, -1)
        totals = np.bincount(value[ok], length[ok])
        best = int(np.argmax(totals))
        out[b] = chord_value(best % 12, QUALITY_NAMES[best // 12])
    return out


def analysis_piece(ids: np.ndarray, vocab: Vocabulary) -> Piece | None:
    """The pitched notes of ``ids`` on the bars the tokens have (not re-guessed)."""
    score = decode(ids, vocab)
    spq = vocab.config.steps_per_quarter
    notes = pitched_notes(score, spq)
    if not len(notes["time"]):
        return None
    types = vocab.types[ids]
    beats, sig = [], (4, 4)
    for i in np.flatnonzero(types == T.BAR).tolist():
        if i + 1 < len(ids) and types[i + 1] == T.TIMESIG:
            sig = vocab.time_signatures[int(vocab.values[ids[i + 1]])]
        beats.append(beat_steps_of(*sig, spq))
    return Piece("piece", notes["time"], notes["duration"], notes["pitch"], notes["velocity"],
                 spq, bar_starts(ids, vocab)[:-1], np.array(beats, np.int64))  # fmt: skip
