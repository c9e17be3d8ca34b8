"""Control tokens: what a piece is asked to be, and what each bar is asked to hold.

With ``TokenizerConfig.controls`` on, a piece may open with ``Style_s`` and ``Key_k`` after BOS
(before any track declarations), and every bar may hold, after its Bar (and TimeSig),
``Density_d Polyphony_p Register_r Chord_c`` in that order, each optional. Being optional,
any subset of them can be left out of a sequence and it stays legal: training drops them at
random (:func:`drop_controls`) so that a model learns to follow whichever are given.

The bar values are bins of what the bar holds (:func:`bar_values`): notes starting per quarter,
notes sounding at an onset, mean pitch; the chord is a root and a quality from the analysis,
added by ``aurl.data.controls``.
"""

from __future__ import annotations

import numpy as np

from aurl.tokens.grammar import BAR_CONTROLS, PIECE_CONTROLS, Grammar, bar_starts
from aurl.tokens.vocab import (
    CHORD_QUALITIES,
    DENSITY_EDGES,
    POLYPHONY_EDGES,
    REGISTER_EDGES,
    TokenType,
    Vocabulary,
)

T = TokenType
CONTROL_TYPES = PIECE_CONTROLS + BAR_CONTROLS


def style_index(source: str, vocab: Vocabulary) -> int:
    """The Style value of a corpus name (``"other"`` for a name not among the styles, -1 when
    there is no ``"other"`` either or no controls)."""
    if not vocab.has_controls:
        return -1
    styles = vocab.config.styles
    name = source if source in styles else "other"
    return styles.index(name) if name in styles else -1


def chord_value(root: int, quality: str) -> int:
    """The Chord token value of a root pitch class and a quality name."""
    return CHORD_QUALITIES.index(quality) * 12 + root % 12


def bar_values(ids: np.ndarray, vocab: Vocabulary) -> dict[TokenType, np.ndarray]:
    """Density, polyphony and register bins of every bar of a piece (-1 for an empty bar),
    from its ids: one value per Bar token, in order. Drum notes count for density only."""
    ids = np.asarray(ids, np.int64)
    bar, pos = Grammar(vocab).timeline(ids)
    n_bars = int((vocab.types[ids] == T.BAR).sum())
    pitch_at = np.flatnonzero(vocab.types[ids] == T.PITCH)
    note_bar, note_pos = bar[pitch_at], pos[pitch_at]
    keep = note_bar >= 0
    note_bar, note_pos, pitch = note_bar[keep], note_pos[keep], vocab.values[ids[pitch_at[keep]]]
    onsets = np.bincount(note_bar, minlength=n_bars)
    lengths = np.diff(bar_starts(ids, vocab))
    quarters = np.maximum(lengths / vocab.config.steps_per_quarter, 1e-9)
    distinct = np.unique(note_bar * (vocab.max_bar_steps + 1) + note_pos)
    onset_times = np.bincount(distinct // (vocab.max_bar_steps + 1), minlength=n_bars)
    mean_pitch = np.bincount(note_bar, pitch, n_bars) / np.maximum(onsets, 1)
    empty = onsets == 0
    out = {
        T.DENSITY: np.digitize(onsets / quarters, DENSITY_EDGES),
        T.POLYPHONY: np.digitize(onsets / np.maximum(onset_times, 1), POLYPHONY_EDGES),
        T.REGISTER: np.digitize(mean_pitch, REGISTER_EDGES),
    }
    return {k: np.where(empty, -1, v).astype(np.int64) for k, v in out.items()}


def insert_controls(ids: np.ndarray, vocab: Vocabulary, piece: dict[TokenType, int],
                    bars: dict[TokenType, np.ndarray]) -> np.ndarray:  # fmt: skip
    """``ids`` with control tokens: ``piece`` values (Style, Key; -1 or absent: none) after
    BOS, and ``bars`` values (one per Bar token; -1: none) after each Bar and its TimeSig.

    Raises:
        ValueError: without controls in the vocabulary, or for a value out of range.
    """
    if not vocab.has_controls:
        raise ValueError("this vocabulary has no control tokens (tokenizer.controls is off)")
    ids = np.asarray(ids, np.int64)
    n_bars = int((vocab.types[ids] == T.BAR).sum())
    head = [vocab.token(k, int(v)) for k in PIECE_CONTROLS if (v := piece.get(k, -1)) >= 0]
    per_bar: list[list[int]] = [[] for _ in range(n_bars)]
    for kind in BAR_CONTROLS:
        values = np.asarray(bars.get(kind, np.full(n_bars, -1)), np.int64)
        if len(values) != n_bars:
            raise ValueError(f"{kind.name}: {len(values)} values for {n_bars} bars")
        for b in np.flatnonzero(values >= 0).tolist():
            per_bar[b].append(vocab.token(kind, int(values[b])))
    types = vocab.types[ids]
    out: list[int] = []
    b = 0
    for i, tok in enumerate(ids.tolist()):
        out.append(tok)
        if i == 0 and tok == vocab.offsets[T.BOS]:
            out.extend(head)
        if types[i] == T.BAR:
            has_sig = i + 1 < len(ids) and types[i + 1] == T.TIMESIG
            if not has_sig:
                out.extend(per_bar[b])
            b += 1
        elif types[i] == T.TIMESIG and i > 0 and types[i - 1] == T.BAR:
            out.extend(per_bar[b - 1])
    return np.array(out, np.int64)


def drop_controls(ids: np.ndarray, vocab: Vocabulary, kinds) -> np.ndarray:
    """``ids`` without the tokens of the control types ``kinds`` (still a legal sequence)."""
    ids = np.asarray(ids, np.int64)
    if not len(kinds):
        return ids
    return ids[~np.isin(vocab.types[ids], [int(k) for k in kinds])]


def transpose_controls(ids: np.ndarray, vocab: Vocabulary, semitones: int) -> np.ndarray:
    """The controls of ``ids`` after its notes moved by ``semitones``: Key and Chord roots
    move with them, and every Register is read again from its bar's notes."""
    ids = np.asarray(ids, np.int64)
    if not semitones or not vocab.has_controls:
        return ids
    out = ids.copy()
    types, values = vocab.types[ids], vocab.values[ids]
    key = types == T.KEY
    moved = (values[key] % 12 + semitones) % 12 + 12 * (values[key] >= 12)
    out[key] = vocab.offsets[T.KEY] + moved
    chord = types == T.CHORD
    moved = values[chord] // 12 * 12 + (values[chord] % 12 + semitones) % 12
    out[chord] = vocab.offsets[T.CHORD] + moved
    register = np.flatnonzero(types == T.REGISTER)
    if len(register):
        bar = np.cumsum(types == T.BAR) - 1
        fresh = bar_values(out, vocab)[T.REGISTER]
        value = fresh[bar[register]]
        out[register] = np.where(value >= 0, vocab.offsets[T.REGISTER] + value, ids[register])
    return out
