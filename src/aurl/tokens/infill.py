"""The infilling layout: the bars to fill are marked in place and written after the piece.

With ``TokenizerConfig.infill`` on, a sequence may mark bars with ``Fill`` (right after the
bar's Bar, TimeSig and controls) and, where it could end, open a second pass with
``Infill``: the marked bars again, in order, each opening with its Bar and TimeSig and holding
only what the marked bar lacks. To fill bars, a marked bar keeps no notes; to fill tracks,
it keeps the notes of the other tracks. A causal decoder so reads both sides of a gap, and
everything the gap must fit with, before it writes into it::

    BOS ... Bar TimeSig Fill Bar Fill Bar ... notes ... Infill Bar TimeSig notes Bar notes EOS

With ``TokenizerConfig.infill_context`` = n, the second pass first writes again, whole, the n
bars before the first marked bar (fewer where the piece has fewer): the notes that lead into
the gap then lie just before the notes the model writes, as they do in a continuation.

:func:`infill_example` makes such a sequence from a piece's ids (for training, and for the
prompt of ``aurl infill``); :func:`merge_fill` puts a generated second pass back in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aurl.tokens import grammar
from aurl.tokens.tracks import declared_tracks
from aurl.tokens.vocab import DRUM_PROGRAM, EOS, TokenType, Vocabulary

T = TokenType
_OPENING = (T.BAR, T.TIMESIG, T.DENSITY, T.POLYPHONY, T.REGISTER, T.CHORD, T.FILL)


@dataclass
class Bar:
    """One bar's tokens: its opening (Bar, TimeSig, controls, Fill) and its events, each a
    position (Position and any Tempo) with its notes as ``(track, tokens)`` (track -1 without
    tracks; the note's tokens from Pitch or Program to Duration)."""

    opening: list[int]
    events: list[tuple[list[int], list[tuple[int, list[int]]]]] = field(default_factory=list)


def split_bars(ids: np.ndarray, vocab: Vocabulary) -> tuple[list[int], list[Bar], list[int]]:
    """``(head, bars, tail)``: what comes before the first Bar, every bar parsed, and EOS
    (or nothing) at the end."""
    ids = [int(i) for i in np.asarray(ids, np.int64)]
    tail = [EOS] if ids and ids[-1] == EOS else []
    body = ids[: len(ids) - len(tail)]
    starts = [i for i, tok in enumerate(body) if vocab.types[tok] == T.BAR]
    head = body[: starts[0]] if starts else body
    bars = [_parse(body[a:b], vocab) for a, b in zip(starts, [*starts[1:], len(body)],
                                                        strict=True)]  # fmt: skip
    return head, bars, tail


def _parse(tokens: list[int], vocab: Vocabulary) -> Bar:
    types = vocab.types
    k = 0
    while k < len(tokens) and types[tokens[k]] in _OPENING:
        k += 1
    bar = Bar(tokens[:k])
    track = -1
    for tok in tokens[k:]:
        kind = types[tok]
        if kind == T.POSITION:
            bar.events.append(([tok], []))
        elif kind == T.TEMPO and bar.events and not bar.events[-1][1]:
            bar.events[-1][0].append(tok)
        elif kind == T.TRACK:
            track = int(vocab.values[tok])
        elif bar.events:
            notes = bar.events[-1][1]
            if kind in (T.PITCH, T.PROGRAM) and (
                not notes or types[notes[-1][1][-1]] == T.DURATION
            ):
                notes.append((track, [tok]))
            elif notes:
                notes[-1][1].append(tok)
    return bar


def join_bar(bar: Bar, vocab: Vocabulary) -> list[int]:
    """The tokens of a bar: positions without notes or tempo are left out, and a Track token
    comes where the track changes inside a position."""
    out = list(bar.opening)
    for position, notes in bar.events:
        if not notes and len(position) == 1:
            continue
        out += position
        last = None
        for track, tokens in notes:
            if track >= 0 and track != last:
                out.append(vocab.token(T.TRACK, track))
            last = track
            out += tokens
    return out


def infill_example(ids: np.ndarray, vocab: Vocabulary, first: int, count: int,
                   tracks: set[int] | None = None) -> np.ndarray:  # fmt: skip
    """The sequence that fills bars ``first .. first + count - 1`` of a piece (all their notes,
    or with ``tracks`` only those tracks' notes), the second pass included.

    Raises:
        ValueError: the bars are not all in the piece, or the vocabulary has no infilling.
    """
    if not vocab.has_infill:
        raise ValueError("this vocabulary has no infilling tokens (tokenizer.infill is off)")
    head, bars, tail = split_bars(ids, vocab)
    if not first >= 0 or first + count > len(bars) or count < 1:
        raise ValueError(f"bars {first + 1}-{first + count} are not all in a piece of "
                         f"{len(bars)} bars")  # fmt: skip
    fill = vocab.offsets[T.FILL]
    context, second = [], []
    for b in range(first - context_bars(vocab, first), first):  # repeated whole, no tempo
        events = [(pos[:1], notes) for pos, notes in bars[b].events]
        second += join_bar(Bar(_second_opening(bars, b, vocab), events), vocab)
    for b, bar in enumerate(bars):
        if not first <= b < first + count:
            context += join_bar(bar, vocab)
            continue
        keep, take = _divide(bar, tracks)
        context += join_bar(Bar([*keep.opening, fill], keep.events), vocab)
        second += join_bar(Bar(_second_opening(bars, b, vocab), take.events), vocab)
    return np.array([*head, *context, vocab.offsets[T.INFILL], *second, *tail], np.int64)


def context_bars(vocab: Vocabulary, first: int) -> int:
    """How many bars the second pass repeats before its marked bars, when the first marked
    bar is bar ``first``."""
    return min(vocab.config.infill_context, first)


def _second_bars(ids: np.ndarray, at: int, marked: list[int], vocab: Vocabulary) -> list[Bar]:
    """The bars the second pass (after Infill at ``at``) writes for the ``marked`` bars: its
    bars past the repeated ones."""
    _, second, _ = split_bars(ids[at + 1 :], vocab)
    return second[context_bars(vocab, marked[0]) if marked else 0 :]


def _divide(bar: Bar, tracks: set[int] | None) -> tuple[Bar, Bar]:
    """The bar split into what stays in the context and what the second pass writes."""
    if tracks is None:
        keep = [(pos, []) for pos, _ in bar.events]  # tempos stay where they are
        return Bar(bar.opening, keep), Bar([], [(pos[:1], n) for pos, n in bar.events])
    stay = [(pos, [n for n in notes if n[0] not in tracks]) for pos, notes in bar.events]
    take = [(pos[:1], [n for n in notes if n[0] in tracks]) for pos, notes in bar.events]
    return Bar(bar.opening, stay), Bar([], take)


def _second_opening(bars: list[Bar], b: int, vocab: Vocabulary) -> list[int]:
    """Bar and the TimeSig in force at bar ``b``."""
    sig = sig_in_force(bars, b, vocab)
    return [vocab.offsets[T.BAR]] + ([sig] if sig is not None else [])


def sig_in_force(bars: list[Bar], b: int, vocab: Vocabulary) -> int | None:
    """The TimeSig token in force at bar ``b``: the last one at or before it (None if none)."""
    for bar in reversed(bars[: b + 1]):
        sig = [t for t in bar.opening if vocab.types[t] == T.TIMESIG]
        if sig:
            return sig[0]
    return None


def merge_fill(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """A piece's ids with its second pass put back into its marked bars (notes of both,
    position by position), without Fill or Infill: what decodes to the whole piece."""
    ids = np.asarray(ids, np.int64)
    at = np.flatnonzero(vocab.types[ids] == T.INFILL)
    if not len(at):
        return ids
    head, bars, _ = split_bars(ids[: at[0]], vocab)
    tail = [EOS] if ids[-1] == EOS else []
    marked = [b for b, bar in enumerate(bars) if vocab.offsets[T.FILL] in bar.opening]
    out = list(head)
    fills = dict(zip(marked, _second_bars(ids, int(at[0]), marked, vocab), strict=False))
    for b, bar in enumerate(bars):
        bar.opening = [t for t in bar.opening if vocab.types[t] != T.FILL]
        if b in fills:
            bar = Bar(bar.opening, _merge_events(bar.events, fills[b].events, vocab))
        out += join_bar(bar, vocab)
    return np.array([*out, *tail], np.int64)


def _merge_events(a: list, b: list, vocab: Vocabulary) -> list:
    """Two bars' events, position by position, notes ordered by track then pitch."""
    by_pos: dict[int, tuple[list[int], list]] = {}
    for position, notes in [*a, *b]:
        value = int(vocab.values[position[0]])
        pos, have = by_pos.setdefault(value, (position[:1], []))
        if len(position) > 1 and len(pos) == 1:
            pos.extend(position[1:])
        have.extend(notes)
    out = []
    for value in sorted(by_pos):
        pos, notes = by_pos[value]
        if vocab.has_tracks:  # as the encoder orders them; without tracks, Program order holds
            notes.sort(key=lambda n: (n[0], int(vocab.values[n[1][0]])))
        out.append((pos, notes))
    return out


def bar_starts(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The bar starts (steps) of ``ids`` up to its Infill, and where the last bar ends."""
    ids = np.asarray(ids, np.int64)
    at = np.flatnonzero(vocab.types[ids] == T.INFILL)
    return grammar.bar_starts(ids[: at[0]] if len(at) else ids, vocab)


def second_pass_notes(ids: np.ndarray, vocab: Vocabulary) -> list[tuple[int, int, int, int, int]]:
    """The notes a second pass writes, as ``(track, time, duration, pitch, velocity)``: times
    in steps of the piece (the k-th bar after Infill is the k-th marked bar), velocity MIDI."""
    ids = np.asarray(ids, np.int64)
    at = np.flatnonzero(vocab.types[ids] == T.INFILL)
    if not len(at):
        return []
    _, bars, _ = split_bars(ids[: at[0]], vocab)
    starts = bar_starts(ids, vocab)
    marked = [b for b, bar in enumerate(bars) if vocab.offsets[T.FILL] in bar.opening]
    out = []
    for b, bar in zip(marked, _second_bars(ids, int(at[0]), marked, vocab), strict=False):
        for position, notes in bar.events:
            time = int(starts[b]) + int(vocab.values[position[0]])
            for track, tokens in notes:
                kinds = [vocab.types[t] for t in tokens]
                if T.PITCH not in kinds or T.DURATION not in kinds or T.VELOCITY not in kinds:
                    continue  # cut short at the end
                value = {k: int(vocab.values[t]) for k, t in zip(kinds, tokens, strict=True)}
                out.append((max(track, 0), time, value[T.DURATION] + 1, value[T.PITCH],
                            int(vocab.velocity_values[value[T.VELOCITY]])))  # fmt: skip
    return out


def kept_sounding(ids: np.ndarray, vocab: Vocabulary, tracks: int
                  ) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """What the first pass of an infilling sequence keeps sounding in and around its marked
    bars, step by step: the highest pitch of each of ``tracks`` tracks, ``(marked bars, max
    bar steps + 2, tracks)`` (NaN: none; index 0 the step before the bar, index s + 1 its step
    s, the last index the first step of the next bar where that bar is not marked: the music
    a gap leads into), whether a note starts there, ``(marked bars, max bar steps, tracks)``,
    and how many bars the second pass repeats before the first marked one. Inside a marked
    bar only the tracks a track-filling pass does not write sound. Drum tracks and tracks
    past ``tracks`` are left out; without Infill, no bars."""
    ids = np.asarray(ids, np.int64)
    at = np.flatnonzero(vocab.types[ids] == T.INFILL)
    steps = vocab.max_bar_steps
    if not len(at) or tracks < 1:
        return np.full((0, steps + 2, max(tracks, 0)), np.nan), np.zeros((0, steps, 0), bool), 0
    _, bars, _ = split_bars(ids[: at[0]], vocab)
    starts = bar_starts(ids, vocab)
    pitch = np.full((int(starts[-1]) + 1, tracks), np.nan)  # one step more: the piece's end
    onset = np.zeros((len(pitch), tracks), bool)
    drums = [k for k, p in enumerate(declared_tracks(ids, vocab)[0]) if p == DRUM_PROGRAM]
    for b, bar in enumerate(bars):
        for position, notes in bar.events:
            time = int(starts[b]) + int(vocab.values[position[0]])
            for track, tokens in notes:
                kinds = [vocab.types[t] for t in tokens]
                if not 0 <= track < tracks or track in drums or T.DURATION not in kinds \
                        or T.PITCH not in kinds:  # fmt: skip
                    continue
                value = {k: int(vocab.values[t]) for k, t in zip(kinds, tokens, strict=True)}
                span = pitch[time : time + value[T.DURATION] + 1, track]
                span[:] = np.fmax(span, value[T.PITCH])
                onset[time, track] = True
    marked = [b for b, bar in enumerate(bars) if vocab.offsets[T.FILL] in bar.opening]
    out = np.full((len(marked), steps + 2, tracks), np.nan)
    starts_at = np.zeros((len(marked), steps, tracks), bool)
    for m, b in enumerate(marked):
        lo, hi = int(starts[b]), min(int(starts[b + 1]), int(starts[b]) + steps)
        if lo > 0:
            out[m, 0] = pitch[lo - 1]
        out[m, 1 : hi - lo + 1] = pitch[lo:hi]
        starts_at[m, : hi - lo] = onset[lo:hi]
        if b + 1 < len(bars) and b + 1 not in marked:
            out[m, -1] = pitch[int(starts[b + 1])]
    return out, starts_at, context_bars(vocab, marked[0]) if marked else 0


def marked_signatures(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """The TimeSig id in force at each marked bar of an infilling sequence's first pass (-1
    where none is): the one its bar in the second pass opens with. Without Infill, none."""
    ids = np.asarray(ids, np.int64)
    at = np.flatnonzero(vocab.types[ids] == T.INFILL)
    if not len(at):
        return np.zeros(0, np.int64)
    _, bars, _ = split_bars(ids[: at[0]], vocab)
    fill = vocab.offsets[T.FILL]
    sigs = [sig_in_force(bars, b, vocab) for b, bar in enumerate(bars) if fill in bar.opening]
    return np.array([-1 if s is None else s for s in sigs], np.int64)
