"""How well generated pieces follow the controls they were asked for.

Every piece is read back the way training pieces are labelled (:mod:`aurl.data.controls`):
its bars' density, polyphony and register bins from its notes, its key and each bar's chord
from the analysis. Against the request: exact-bin and within-one-bin accuracy and Spearman's
rho for the ordinal controls, key accuracy, and a chord F1 per bar (the chords the analysis
finds in a bar against the one asked for). The same numbers for the requests shuffled across
the samples say what agreement comes by chance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from aurl.analysis.harmony import analyze_harmony
from aurl.data.controls import analysis_piece, bar_chords
from aurl.generate.controls import ControlPlan
from aurl.tokens import TokenType, Vocabulary
from aurl.tokens.controls import bar_values

T = TokenType
ORDINAL = (T.DENSITY, T.POLYPHONY, T.REGISTER)


@dataclass(frozen=True)
class Reading:
    """What a generated piece holds: per bar the ordinal bins (-1: empty bar), the chords
    the analysis names in each bar (as Chord values), the one sounding longest in it (as
    training pieces are labelled; -1: none), and the global key (-1: none)."""

    bins: dict[TokenType, np.ndarray]
    chords: list[set[int]]
    key: int
    main: np.ndarray | None = None


def read_piece(ids: np.ndarray, vocab: Vocabulary) -> Reading:
    """The control values a piece's notes show (its control tokens are not looked at)."""
    bins = bar_values(ids, vocab)
    n = len(bins[T.DENSITY])
    chords: list[set[int]] = [set() for _ in range(n)]
    piece = analysis_piece(ids, vocab)
    key, main = -1, np.full(n, -1, np.int64)
    if piece is not None:
        harmony = analyze_harmony(piece)
        key = harmony.key.index
        c = harmony.half_beats
        found = bar_chords(c, piece.bar_starts, piece.end)
        main[: min(n, len(found))] = found[:n]
        bar = np.searchsorted(piece.bar_starts, c.starts, side="right") - 1
        for b, root, quality in zip(bar.tolist(), c.root.tolist(), c.quality.tolist(),
                                    strict=True):  # fmt: skip
            if 0 <= b < n and root >= 0:
                chords[b].add(quality * 12 + root)
    return Reading(bins, chords, key, main)


def adherence(plans: list[ControlPlan], readings: list[Reading]) -> dict:
    """Agreement of each reading with its plan, pooled over all pieces' bars.

    Returns per ordinal control ``exact``, ``within_one`` and ``spearman``; ``key`` accuracy;
    ``chord_f1`` and ``chord_match`` (the bar's longest-sounding chord is the one asked); each
    with the number of bars (or pieces) it was measured on. Controls no plan asked for are
    left out.
    """
    out: dict = {}
    for kind in ORDINAL:
        asked, got = _pairs(plans, readings, kind)
        if len(asked):
            out[kind.name.lower()] = {
                "exact": round(float((asked == got).mean()), 4),
                "within_one": round(float((np.abs(asked - got) <= 1).mean()), 4),
                "spearman": round(spearman(asked, got), 4),
                "bars": int(len(asked)),
            }
    keys = [(p.key, r.key) for p, r in zip(plans, readings, strict=True) if p.key >= 0]
    if keys:
        out["key"] = {"accuracy": round(float(np.mean([a == b for a, b in keys])), 4),
                      "pieces": len(keys)}  # fmt: skip
    f1 = _chord_f1(plans, readings)
    if f1:
        out["chord_f1"] = {"f1": round(float(np.mean(f1)), 4), "bars": len(f1)}
    match = _chord_match(plans, readings)
    if match:
        out["chord_match"] = {"accuracy": round(float(np.mean(match)), 4), "bars": len(match)}
    return out


def request_score(plan: ControlPlan, reading: Reading) -> float:
    """How well one piece follows its request, 0 to 1: the mean over the controls asked
    (key, chords, each ordinal kind) of the key read as asked (0 or 1), the bars' chord F1,
    and the share of bars within one bin; 1 when nothing checkable was asked."""
    parts = []
    if plan.key >= 0:
        parts.append(float(reading.key == plan.key))
    f1 = _chord_f1([plan], [reading])
    if f1:
        parts.append(float(np.mean(f1)))
    for kind in ORDINAL:
        asked, got = _pairs([plan], [reading], kind)
        if len(asked):
            parts.append(float((np.abs(asked - got) <= 1).mean()))
    return float(np.mean(parts)) if parts else 1.0


def request_judge(plans: list[ControlPlan], vocab: Vocabulary
                  ) -> Callable[[int, torch.Tensor], float]:  # fmt: skip
    """A ``judge`` for best-of-N sampling (``aurl.generate.sampler.sample``): the
    :func:`request_score` of a candidate of prompt ``i`` against ``plans[i]``."""
    return lambda i, ids: request_score(plans[i], read_piece(ids.cpu().numpy(), vocab))


def shuffled(plans: list[ControlPlan], seed: int = 0) -> list[ControlPlan]:
    """The plans in a random order with no plan in its own place (the chance baseline)."""
    n = len(plans)
    if n < 2:
        return list(plans)
    shift = 1 + int(np.random.default_rng(seed).integers(0, n - 1))
    order = np.random.default_rng(seed + 1).permutation(n)
    place = np.empty(n, np.int64)
    place[order] = order[(np.arange(n) + shift) % n]  # a derangement of the order
    return [plans[int(i)] for i in place]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank; 0 for a constant input)."""
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # ties get their mean rank
        same = x == value
        ranks[same] = ranks[same].mean()
    return ranks


def _asked(plan: ControlPlan, kind: TokenType, n: int) -> np.ndarray:
    values = plan.bars.get(kind, ())
    return np.resize(np.asarray(values, np.int64), n) if values else np.full(n, -1)


def _pairs(plans, readings, kind) -> tuple[np.ndarray, np.ndarray]:
    asked, got = [], []
    for plan, reading in zip(plans, readings, strict=True):
        have = reading.bins[kind]
        want = _asked(plan, kind, len(have))
        ok = (want >= 0) & (have >= 0)
        asked.append(want[ok])
        got.append(have[ok])
    return (np.concatenate(asked), np.concatenate(got)) if asked else (np.zeros(0), np.zeros(0))


def _chord_f1(plans, readings) -> list[float]:
    scores = []
    for plan, reading in zip(plans, readings, strict=True):
        want = _asked(plan, T.CHORD, len(reading.chords))
        for b, found in enumerate(reading.chords):
            if want[b] < 0:
                continue
            hit = int(want[b]) in found
            precision = hit / len(found) if found else 0.0
            scores.append(2 * precision / (precision + 1) if hit else 0.0)
    return scores


def _chord_match(plans, readings) -> list[bool]:
    hits = []
    for plan, reading in zip(plans, readings, strict=True):
        if reading.main is None:
            continue
        want = _asked(plan, T.CHORD, len(reading.main))
        hits += (reading.main[want >= 0] == want[want >= 0]).tolist()
    return hits
