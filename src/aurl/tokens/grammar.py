"""The grammar of legal token sequences, as one finite-state description used three ways.

* ``validate(ids)`` walks a sequence (plain Python, the reference) and reports the first
  violation with its index and reason.
* ``timeline(ids)`` gives the bar index and the position in the bar of every token.
* ``aurl.tokens.mask.GrammarState`` holds the state of a batch of sequences as tensors and
  gives the mask of legal next tokens with tensor operations only (kept apart so that this
  module needs numpy alone).

State: the type of the last token, the position in the current bar (-1 right after a Bar),
the length of the current bar in steps (0 until the first TimeSig), the bars seen and, with
tracks, the tracks declared and the track and pitch of the last note at this position. With
tracks, the declarations between BOS and the first Bar count up from Track_0, a note may name
only a declared track, and at one position the tracks rise and each track's pitches rise
strictly (notes are written sorted by track and pitch, one per pitch of a track).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.tokens.vocab import TokenType, Vocabulary

T = TokenType
_START = len(TokenType)  # pseudo type: nothing read yet
_BAR_NO_SIG = _START + 1  # pseudo type: a Bar before any TimeSig has been seen
_HEAD_TRACK = _START + 2  # pseudo type: a Track among the declarations (before any Bar)

# What may follow each type (rows) — the whole grammar apart from the position rule.
FOLLOWS: dict[int, tuple[TokenType, ...]] = {
    _START: (T.BOS,),
    T.BOS: (T.BAR,),
    _BAR_NO_SIG: (T.TIMESIG,),
    T.BAR: (T.TIMESIG, T.POSITION, T.BAR, T.EOS),
    T.TIMESIG: (T.POSITION, T.BAR, T.EOS),
    T.POSITION: (T.TEMPO, T.PROGRAM),
    T.TEMPO: (T.PROGRAM, T.POSITION, T.BAR, T.EOS),
    T.PROGRAM: (T.PITCH,),
    T.PITCH: (T.VELOCITY,),
    T.VELOCITY: (T.MICROTIMING, T.DURATION),
    T.MICROTIMING: (T.DURATION,),
    T.DURATION: (T.PROGRAM, T.PITCH, T.POSITION, T.BAR, T.EOS),
    T.EOS: (T.PAD,),
    T.PAD: (T.PAD,),
    T.RESERVED: (),
    T.TRACK: (),
    T.VOICE: (),
    _HEAD_TRACK: (),
    **{
        kind: ()
        for kind in (T.STYLE, T.KEY, T.DENSITY, T.POLYPHONY, T.REGISTER, T.CHORD, T.FILL, T.INFILL)
    },
}
# With tracks: declarations after BOS, and a Track token where a note names its program.
TRACK_FOLLOWS: dict[int, tuple[TokenType, ...]] = {
    **FOLLOWS,
    T.BOS: (T.TRACK, T.BAR),
    _HEAD_TRACK: (T.PROGRAM,),
    T.PROGRAM: (T.VOICE, T.TRACK, T.BAR),
    T.VOICE: (T.TRACK, T.BAR),
    T.POSITION: (T.TEMPO, T.TRACK),
    T.TEMPO: (T.TRACK, T.POSITION, T.BAR, T.EOS),
    T.TRACK: (T.PITCH,),
    T.DURATION: (T.TRACK, T.PITCH, T.POSITION, T.BAR, T.EOS),
}


PIECE_CONTROLS = (T.STYLE, T.KEY)  # after BOS, in this order, each optional
BAR_CONTROLS = (T.DENSITY, T.POLYPHONY, T.REGISTER, T.CHORD)  # after a Bar and its TimeSig


def follows(tracks: bool = False, controls: bool = False,
            infill: bool = False) -> dict[int, tuple[TokenType, ...]]:  # fmt: skip
    """What may follow each type (or pseudo type), with or without tracks, controls and
    infilling."""
    rules = dict(TRACK_FOLLOWS if tracks else FOLLOWS)
    if controls:
        _optional_chain(rules, [T.BOS], PIECE_CONTROLS)
        _optional_chain(rules, [T.BAR, T.TIMESIG], BAR_CONTROLS)
    if infill:  # Fill where a bar's first Position could come; Infill where EOS could
        for row, allowed in list(rules.items()):
            extra = (T.FILL,) if T.POSITION in allowed and row not in (T.DURATION, T.TEMPO) else ()
            extra += (T.INFILL,) if T.EOS in allowed else ()
            rules[row] = allowed + extra
        rules[T.FILL] = (T.POSITION, T.BAR, T.INFILL, T.EOS)
        rules[T.INFILL] = (T.BAR,)
    return rules


def _optional_chain(rules: dict, after: list[TokenType], chain: tuple[TokenType, ...]) -> None:
    """Let the types of ``chain`` follow each of ``after``, in order and each optional,
    before what followed ``after[-1]`` (what follows ``after[0]`` keeps its own)."""
    then = tuple(k for k in rules[after[-1]] if k not in chain)
    for row in after:
        rules[row] = tuple(dict.fromkeys(rules[row] + chain))
    for i, kind in enumerate(chain):
        rules[kind] = chain[i + 1 :] + then


def follow_table(tracks: bool = False, controls: bool = False, infill: bool = False
                 ) -> np.ndarray:  # fmt: skip
    """Boolean table (state rows, token types) of what may follow what."""
    table = np.zeros((_HEAD_TRACK + 1, len(TokenType)), bool)
    for row, allowed in follows(tracks, controls, infill).items():
        table[row, [int(a) for a in allowed]] = True
    return table


@dataclass(frozen=True)
class Violation:
    """The first place a sequence breaks the grammar."""

    index: int
    token: int
    reason: str

    def __str__(self) -> str:
        return f"token {self.index} ({self.token}): {self.reason}"


class Grammar:
    """The legal-sequence rules for one vocabulary."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        flags = (vocab.has_tracks, vocab.has_controls, vocab.has_infill)
        self.follows = follows(*flags)
        self.table = follow_table(*flags)

    def _row(self, last: int, bar_len: int, bars: int) -> int:
        if last == T.BAR and bar_len == 0:
            return _BAR_NO_SIG
        return _HEAD_TRACK if last == T.TRACK and bars == 0 else last

    def validate(self, ids) -> Violation | None:
        """Walk ``ids`` and return the first :class:`Violation`, or None if all is legal."""
        vocab, last, pos, bar_len, bars, tracks = self.vocab, _START, -1, 0, 0, 0
        filled = False  # after Infill: the second pass
        at_track, at_pitch = -1, -1  # the last note's track and pitch at this position
        for i, tok in enumerate(np.asarray(ids, np.int64).tolist()):
            if not 0 <= tok < vocab.size:
                return Violation(i, tok, f"id outside the vocabulary (size {vocab.size})")
            kind, value = int(vocab.types[tok]), int(vocab.values[tok])
            row = self._row(last, bar_len, bars)
            if not self.table[row, kind]:
                after = "the start" if last == _START else TokenType(last).name
                allowed = ", ".join(a.name for a in self.follows[row]) or "nothing"
                return Violation(
                    i, tok, f"{vocab.name(tok)} cannot follow {after}; expected {allowed}"
                )
            if filled and kind in (T.FILL, T.INFILL):
                return Violation(i, tok, f"{vocab.name(tok)} after Infill (one second pass, "
                                         "no marks in it)")  # fmt: skip
            filled = filled or kind == T.INFILL
            if kind == T.TRACK and bars == 0:
                if value != tracks:
                    return Violation(i, tok, f"track {value} declared where track {tracks} is next")
                tracks += 1
            elif kind == T.TRACK and value >= tracks:
                return Violation(i, tok, f"track {value} was not declared ({tracks} were)")
            if (reason := self._order(kind, value, at_track, at_pitch)) is not None:
                return Violation(i, tok, reason)
            if kind in (T.POSITION, T.BAR) or (kind == T.TRACK and bars):
                at_track, at_pitch = value if kind == T.TRACK else -1, -1
            elif kind == T.PITCH:
                at_pitch = value
            if kind == T.POSITION:
                if value <= pos:
                    return Violation(i, tok, f"position {value} is not after position {pos}")
                if value >= bar_len:
                    return Violation(i, tok, f"position {value} is past the bar ({bar_len} steps)")
                pos = value
            elif kind == T.BAR:
                pos, bars = -1, bars + 1
            elif kind == T.TIMESIG:
                bar_len = int(vocab.bar_steps[tok])
            last = kind
        return None

    def _order(self, kind: int, value: int, at_track: int, at_pitch: int) -> str | None:
        """With tracks, why a Track or Pitch is out of order at its position (None if not)."""
        if not self.vocab.has_tracks:
            return None
        if kind == T.TRACK and at_track >= 0 and value <= at_track:
            return f"track {value} after track {at_track} at one position (tracks rise)"
        if kind == T.PITCH and value <= at_pitch:
            return f"pitch {value} after pitch {at_pitch} in one track at one position (rising)"
        return None

    def timeline(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Bar index (-1 before the first Bar) and position in the bar (in steps, -1 before
        the first Position of a bar) of every token."""
        ids = np.asarray(ids, np.int64)
        types = self.vocab.types[np.clip(ids, 0, self.vocab.size - 1)]
        is_bar = types == T.BAR
        bar = np.cumsum(is_bar) - 1
        is_pos = types == T.POSITION
        # Position value carried forward, reset at every Bar.
        marks = np.where(is_pos | is_bar, np.arange(len(ids)), -1)
        last_mark = np.maximum.accumulate(np.maximum(marks, -1)) if len(ids) else marks
        pos = np.where(
            (last_mark >= 0) & is_pos[np.maximum(last_mark, 0)],
            self.vocab.values[ids[np.maximum(last_mark, 0)].clip(0, self.vocab.size - 1)],
            -1,
        )
        return bar, pos


def bar_starts(ids, vocab: Vocabulary) -> np.ndarray:
    """The start (in steps) of every bar of ``ids`` and where the last one ends: each bar is
    as long as the TimeSig in force (4/4 before any)."""
    ids = np.asarray(ids, np.int64)
    types = vocab.types[np.clip(ids, 0, vocab.size - 1)]
    length, starts, time = 4 * vocab.config.steps_per_quarter, [], 0
    for i in np.flatnonzero(types == T.BAR).tolist():
        if i + 1 < len(ids) and types[i + 1] == T.TIMESIG:
            length = int(vocab.bar_steps[ids[i + 1]])
        starts.append(time)
        time += length
    return np.array([*starts, time], np.int64)
