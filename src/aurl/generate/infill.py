"""Infilling and harmonizing: regenerate bars or tracks of a piece with both sides in view.

The piece is encoded, the bars to fill are marked and the prompt ends where the second pass
begins (:mod:`aurl.tokens.infill`); the model writes the marked bars again (with tracks
named, only the tracks asked for: the sampler's mask holds it). The result is the original
score with only the asked notes replaced: every note outside the span and the tracks is the
original one, untouched (not re-quantized).
"""

from __future__ import annotations

import re

import numpy as np
import symusic
import torch

from aurl.generate.controls import ControlPlan
from aurl.generate.sampler import SamplingConfig, sample
from aurl.tokens import EOS, PAD, TokenType, Vocabulary
from aurl.tokens.infill import (
    bar_starts,
    context_bars,
    infill_example,
    join_bar,
    merge_fill,
    second_pass_notes,
    sig_in_force,
    split_bars,
)
from aurl.tokens.tracks import declared_tracks, track_names
from aurl.tokens.vocab import VOICE_NAMES

T = TokenType
HARMONY_VOICES = ("Alto", "Tenor", "Bass")  # written under a melody (the Soprano)


def parse_span(text: str, n_bars: int) -> tuple[int, int]:
    """``"5-8"`` (bars 5 to 8, counted from 1) or ``"5"`` -> (first index, count).

    Raises:
        ValueError: not a span, or not inside the piece's ``n_bars`` bars.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", text)
    if not m:
        raise ValueError(f"bars {text!r}: give a span like 5-8 or one bar like 5")
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= first <= last <= n_bars:
        raise ValueError(f"bars {text!r}: the piece has bars 1 to {n_bars}")
    return first - 1, last - first + 1


def parse_tracks(text: str, names: list[str]) -> set[int]:
    """Track names (``alto,tenor``, any case) or numbers from 1 -> track indices.

    Raises:
        ValueError: a name the piece has no track for (the message lists its tracks).
    """
    lower = [n.lower() for n in names]
    out = set()
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.isdigit() and 1 <= int(part) <= len(names):
            out.add(int(part) - 1)
        elif part.lower() in lower:
            out.add(lower.index(part.lower()))
        else:
            raise ValueError(f"track {part!r}: the piece's tracks are "
                             f"{', '.join(names)} (names or numbers from 1)")  # fmt: skip
    if not out:
        raise ValueError("tracks: name at least one track")
    if len(out) == len(names):
        raise ValueError("tracks: every track asked for; leave one as context, or use "
                         "--bars alone to fill whole bars")  # fmt: skip
    return out


def fill_prompt(ids: np.ndarray, vocab: Vocabulary, first: int, count: int,
                tracks: set[int] | None = None, limit: int = 0
                ) -> tuple[np.ndarray, int, int]:  # fmt: skip
    """The prompt that fills bars ``first .. first + count - 1`` (with ``tracks``, only their
    notes): everything up to the Bar and TimeSig of the second pass's first marked bar (after
    the bars it repeats, see ``TokenizerConfig.infill_context``). With ``limit`` (the
    model's context), only the bars nearest the span are kept, as many on each side as fit
    (a bar on the side with fewer at a time): the prompt and a second pass as long as the one
    the piece's own notes make (and four tokens more per bar) fit in it.

    Returns:
        The prompt, the bars the row should end with (the engine's ``max_bars``), and the
        first bar the prompt kept (the second pass's times count from there).
    """
    ids = np.asarray(ids, np.int64)
    ids = ids[ids != EOS]
    head, bars, _ = split_bars(ids, vocab)
    made = lambda a, b: infill_example(_crop(head, bars, a, b, vocab), vocab, first - a, count,  # noqa: E731
                                       tracks)  # fmt: skip
    fits = lambda example: not limit or len(example) + 4 * count <= limit  # noqa: E731
    lo, hi = 0, len(bars)
    example = made(lo, hi)
    if not fits(example):  # from the span outwards, a bar on the side with fewer at a time
        lo, hi = first, first + count
        example = made(lo, hi)
        grown = True
        while grown:
            left = [(lo - 1, hi)] if lo > 0 else []
            right = [(lo, hi + 1)] if hi < len(bars) else []
            grown = False
            for a, b in left + right if first - lo <= hi - first - count else right + left:
                wider = made(a, b)
                if fits(wider):
                    lo, hi, example, grown = a, b, wider, True
                    break
    repeated = context_bars(vocab, first - lo)
    at = int(np.flatnonzero(vocab.types[example] == T.INFILL)[0])
    end = at + 1 + int(np.flatnonzero(vocab.types[example[at + 1 :]] == T.BAR)[repeated]) + 1
    if end < len(example) and vocab.types[example[end]] == T.TIMESIG:
        end += 1
    return example[:end], (hi - lo) + repeated + count, lo


def _crop(head: list[int], bars: list, lo: int, hi: int, vocab: Vocabulary) -> np.ndarray:
    """The head and bars ``lo`` to ``hi - 1``, the first with the TimeSig in force."""
    out = list(head)
    for b in range(lo, hi):
        tokens = join_bar(bars[b], vocab)
        if b == lo and lo > 0 and (len(tokens) < 2 or vocab.types[tokens[1]] != T.TIMESIG):
            sig = sig_in_force(bars, lo - 1, vocab)
            if sig is not None:
                tokens = [tokens[0], sig, *tokens[1:]]
        out += tokens
    return np.array(out, np.int64)


def sample_fills(model, vocab: Vocabulary, score: symusic.Score, ids: np.ndarray,
                 context: np.ndarray, span: tuple[int, int], targets: set[int] | None,
                 mapping: list[int], extra: dict[int, symusic.Track], num: int,
                 sampling: SamplingConfig, generator, budget: int
                 ) -> list[tuple[np.ndarray, symusic.Score, int, int]]:  # fmt: skip
    """``num`` second passes sampled after the prompt of ``context`` (the piece's ids, or a
    melody's with new tracks declared), each merged into ``score``: per sample the ids of
    ``context`` with the fill in place, the merged score, its bars and the tokens it drew. A
    span whose second pass leaves no room in the model's context for a bar on a side of it
    that the piece has is filled a bar at a time instead, each bar with those filled before
    it in view (:func:`_bar_by_bar`)."""
    first, count = span
    limit = getattr(model.config, "max_seq_len", 0)  # a longer piece is cropped to fit
    plan = ControlPlan(fill_tracks=tuple(sorted(targets or ())), fills=True)
    starts = bar_starts(ids, vocab)
    merged = lambda notes: merge_score(score, notes, starts, vocab.config.steps_per_quarter,  # noqa: E731
                                       first, count, targets, mapping,
                                       {k: t.copy() for k, t in extra.items()})  # fmt: skip
    prompt, max_bars, lo = fill_prompt(context, vocab, first, count, targets, limit)
    if _cramped(vocab, first, count, len(starts) - 1, max_bars, lo):
        return [(piece, merged(notes), len(starts) - 1, drawn) for piece, notes, drawn
                in _bar_by_bar(model, vocab, context, span, targets, limit, plan, num, sampling,
                               generator, budget)]  # fmt: skip
    batch = torch.as_tensor(np.tile(prompt, (num, 1)), dtype=torch.long,
                            device=next(model.parameters()).device)  # fmt: skip
    out = sample(model, vocab, batch, max_bars, budget, sampling, generator, plans=[plan] * num)
    fills = []
    for row in out.cpu().numpy():
        row = row[row != PAD]
        notes = [(k, t + int(starts[lo]), *rest) for k, t, *rest in second_pass_notes(row, vocab)]
        piece = _put_back(np.asarray(context, np.int64), row, lo, vocab)
        fills.append((piece, merged(notes), len(starts) - 1, len(row) - len(prompt)))
    return fills


def _cramped(vocab: Vocabulary, first: int, count: int, bars: int, max_bars: int,
             lo: int) -> bool:  # fmt: skip
    """Whether the prompt :func:`fill_prompt` made for bars ``first .. first + count - 1``
    of a piece of ``bars`` bars (its ``max_bars`` and ``lo``) keeps no bar before them (or
    after them) where the piece has some (one bar alone is never: it has nothing to split)."""
    hi = lo + max_bars - context_bars(vocab, first - lo) - count
    starved = (first > 0 and lo == first) or (first + count < bars and hi == first + count)
    return count > 1 and starved


def _bar_by_bar(model, vocab: Vocabulary, context: np.ndarray, span: tuple[int, int],
                targets: set[int] | None, limit: int, plan: ControlPlan, num: int,
                sampling: SamplingConfig, generator, budget: int
                ) -> list[tuple[np.ndarray, list, int]]:  # fmt: skip
    """Per sample, the span filled one bar at a time, each bar's prompt holding the bars
    filled before it: the piece's ids with the fill, its notes (in the piece's steps) and the
    tokens drawn."""
    first, count = span
    device = next(model.parameters()).device
    starts = bar_starts(context, vocab)
    out = []
    for _ in range(num):
        piece, notes, drawn = np.asarray(context, np.int64), [], 0
        for bar in range(first, first + count):
            prompt, max_bars, lo = fill_prompt(piece, vocab, bar, 1, targets, limit)
            row = sample(model, vocab, torch.as_tensor(prompt[None], device=device), max_bars,
                         max(budget // count, 1), sampling, generator, plans=[plan])  # fmt: skip
            row = row[0].cpu().numpy()
            row = row[row != PAD]
            notes += [(k, t + int(starts[lo]), *rest)
                      for k, t, *rest in second_pass_notes(row, vocab)]  # fmt: skip
            piece = _put_back(piece, row, lo, vocab)
            drawn += len(row) - len(prompt)
        out.append((piece, notes, drawn))
    return out


def _put_back(piece: np.ndarray, row: np.ndarray, lo: int, vocab: Vocabulary) -> np.ndarray:
    """``piece`` with the bars of a fill's sequence ``row`` (made from its bars from ``lo``
    on) in place, their second pass merged in."""
    head, bars, tail = split_bars(piece, vocab)
    _, filled, _ = split_bars(merge_fill(row, vocab), vocab)
    bars[lo : lo + len(filled)] = filled
    return np.array([*head, *(t for bar in bars for t in join_bar(bar, vocab)), *tail], np.int64)


def track_map(score: symusic.Score, limit: int) -> list[int]:
    """The Score track of every token track: the tracks with notes, in order.

    Raises:
        ValueError: more tracks with notes than the model's ``limit``.
    """
    full = [i for i, t in enumerate(score.tracks) if len(t.notes)]
    if len(full) > limit:
        raise ValueError(f"the piece has {len(full)} tracks with notes; this model takes at "
                         f"most {limit}")  # fmt: skip
    return full


def merge_score(original: symusic.Score, notes: list[tuple[int, int, int, int, int]],
                starts: np.ndarray, spq: int, first: int, count: int,
                tracks: set[int] | None, mapping: list[int],
                new_tracks: dict[int, symusic.Track] | None = None) -> symusic.Score:  # fmt: skip
    """``original`` with the span's notes (of ``tracks``, or all) replaced by ``notes``
    (``(track, step, duration, pitch, velocity)`` in the tokens' steps). Token tracks past
    ``mapping`` go to ``new_tracks`` (added at the end)."""
    out = original.copy()
    tpq = out.tpq
    lo, hi = (int(starts[first]) * tpq) // spq, (int(starts[first + count]) * tpq) // spq
    for k, index in enumerate(mapping):
        if tracks is None or k in tracks:
            track = out.tracks[index]
            kept = [n for n in track.notes if not lo <= n.time < hi]
            track.notes = symusic.Note.from_numpy(*_columns(kept)) if kept else track.notes[:0]
    extra = dict(new_tracks or {})
    by_track: dict[int, list[tuple[int, int, int, int]]] = {}
    for k, step, dur, pitch, vel in notes:
        by_track.setdefault(k, []).append((step * tpq // spq, dur * tpq // spq, pitch, vel))
    for k, rows in sorted(by_track.items()):
        if k < len(mapping):
            track = out.tracks[mapping[k]]
        elif k in extra:
            track = extra[k]
        else:
            continue  # a track the model was not asked for
        arr = np.array(rows, np.int64)
        merged = [(n.time, n.duration, n.pitch, n.velocity) for n in track.notes]
        track.notes = symusic.Note.from_numpy(*_columns(sorted([*merged, *map(tuple, arr)])))
    for k in sorted(extra):
        out.tracks.append(extra[k])
    return out


def _columns(rows) -> tuple[np.ndarray, ...]:
    if rows and hasattr(rows[0], "time"):
        rows = [(n.time, n.duration, n.pitch, n.velocity) for n in rows]
    a = np.array(rows, np.int64).reshape(-1, 4)
    return (a[:, 0].astype(np.int32), a[:, 1].astype(np.int32), a[:, 2].astype(np.int8),
            a[:, 3].astype(np.int8))  # fmt: skip


def harmony_ids(ids: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, set[int]]:
    """A melody's ids with Alto, Tenor and Bass declared under it (the melody becomes the
    Soprano), and the new tracks' indices.

    Raises:
        ValueError: the melody has more than one track, or the model has too few tracks.
    """
    programs, _ = declared_tracks(ids, vocab)
    if len(programs) != 1:
        raise ValueError(f"a melody to harmonize has one track; this file has {len(programs)}")
    if vocab.config.tracks < 1 + len(HARMONY_VOICES):
        raise ValueError(f"this model takes {vocab.config.tracks} tracks; harmonizing needs 4")
    first_bar = int(np.flatnonzero(vocab.types[ids] == T.BAR)[0])
    head = [int(t) for t in ids[:first_bar] if vocab.types[t] != T.VOICE]
    at = next(i for i, t in enumerate(head) if vocab.types[t] == T.TRACK)
    head = head[: at + 2] + [vocab.token(T.VOICE, VOICE_NAMES.index("Soprano"))] + head[at + 2 :]
    for k, voice in enumerate(HARMONY_VOICES, start=1):
        head += [vocab.token(T.TRACK, k), vocab.token(T.PROGRAM, programs[0]),
                 vocab.token(T.VOICE, VOICE_NAMES.index(voice))]  # fmt: skip
    return np.concatenate([head, ids[first_bar:]]).astype(np.int64), {1, 2, 3}


def harmony_tracks(program: int) -> dict[int, symusic.Track]:
    """Empty Alto, Tenor and Bass tracks (token tracks 1-3) of the melody's program."""
    names = track_names([program] * 3, [VOICE_NAMES.index(v) for v in HARMONY_VOICES])
    return {k: symusic.Track(names[k - 1], program, False) for k in (1, 2, 3)}


def with_fill_controls(ids: np.ndarray, vocab: Vocabulary, plan: ControlPlan, first: int,
                       count: int, style_given: bool) -> np.ndarray:  # fmt: skip
    """A piece's ids with the controls of ``plan`` for filling bars ``first .. first + count
    - 1``: Key (and Style, when it was asked for) at the head, and the plan's bar controls
    (cycled) on the filled bars only, where training examples keep a filled bar's controls.

    Raises:
        ValueError: a control that infilling cannot take (instruments, voices, tempo and
            time signature are the piece's own).
    """
    if plan.tracks or plan.tempo >= 0 or plan.time_signature >= 0:
        raise ValueError("infilling keeps the piece's instruments, voices, tempo and time "
                         "signature; give style, key, density, polyphony, register or chords")  # fmt: skip
    from aurl.tokens.controls import insert_controls

    n_bars = int((vocab.types[ids] == T.BAR).sum())
    piece = {T.KEY: plan.key, T.STYLE: plan.style if style_given else -1}
    bars = {}
    for kind, values in plan.bars.items():
        column = np.full(n_bars, -1, np.int64)
        for i in range(count):
            column[first + i] = values[i % len(values)]
        bars[kind] = column
    return insert_controls(ids, vocab, piece, bars)
