"""Control adherence of a model trained with controls: requests, samples and the scores.

:func:`adherence_report` draws requests (a key, a chord progression in it, and one bin per
ordinal control, each drawn from what training pieces hold), samples one piece per request
and scores each against its own request and, as the chance baseline, against another
piece's. :func:`style_report` trains the style classifier (:mod:`aurl.evaluate.style`) on
real pieces of each corpus named, and measures it on held-out real pieces, on samples asked
for each style, and on the same samples labelled with a shuffled style (chance).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from aurl.data.shards import Shard
from aurl.evaluate.adherence import adherence, read_piece, request_judge, shuffled
from aurl.evaluate.datasets import source_dataset
from aurl.evaluate.notes import crop_bars, ids_to_notes
from aurl.evaluate.style import fit_styles, style_vector
from aurl.generate.control_names import parse_chords
from aurl.generate.controls import ControlPlan, plan_prompt
from aurl.generate.sampler import SamplingConfig, sample
from aurl.tokens import PAD, TokenType, Vocabulary

T = TokenType
PROGRESSIONS = ("I IV V I", "I vi IV V", "ii V I I", "I V vi IV", "I IV I V")
MINOR_PROGRESSIONS = ("i iv V i", "i VI iv V", "i iv i V", "i VII VI V")
SAMPLING = SamplingConfig(top_p=0.95)


def random_requests(n: int, vocab: Vocabulary, seed: int, style: str = "bach"
                    ) -> list[ControlPlan]:  # fmt: skip
    """``n`` plans in ``style``: a random key, a progression in it, one bin per ordinal
    control."""
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(n):
        key = int(rng.integers(0, 24))
        pool = MINOR_PROGRESSIONS if key >= 12 else PROGRESSIONS
        chords = parse_chords(pool[int(rng.integers(0, len(pool)))], key)
        bars = {T.DENSITY: (int(rng.integers(2, 7)),), T.POLYPHONY: (int(rng.integers(1, 5)),),
                T.REGISTER: (int(rng.integers(2, 6)),), T.CHORD: chords}  # fmt: skip
        plans.append(ControlPlan(style=vocab.config.styles.index(style), key=key, bars=bars))
    return plans


def piece_plan(ids: np.ndarray, vocab: Vocabulary, bars: int, style: int = -1) -> ControlPlan:
    """The plan a prepared piece's own control tokens spell for its first ``bars`` bars: its
    Key, and per bar its Density, Polyphony, Register and Chord (-1 where the bar has none),
    under ``style`` (-1: none)."""
    ids = np.asarray(ids, np.int64)
    types, values = vocab.types[ids], vocab.values[ids]
    keys = values[types == T.KEY]
    bar = np.cumsum(types == T.BAR) - 1
    per_bar = {}
    for kind in (T.DENSITY, T.POLYPHONY, T.REGISTER, T.CHORD):
        row = np.full(bars, -1, np.int64)
        at = (types == kind) & (bar < bars)
        row[bar[at]] = values[at]
        per_bar[kind] = tuple(row.tolist())
    return ControlPlan(style=style, key=int(keys[0]) if len(keys) else -1, bars=per_bar)


def held_out_pieces(n: int, tokenizer, styles: tuple[str, ...], bars: int, seed: int
                    ) -> list[tuple[int, np.ndarray]]:  # fmt: skip
    """``n`` test pieces of ``styles`` in turn, each as (its Style value, its first ``bars``
    bars as ids): their own controls are requests known to be possible in that style."""
    vocab = tokenizer.vocab
    rng = np.random.default_rng(seed)
    pools = []
    for style in styles:
        shard = Shard(source_dataset(style, tokenizer).split("test"))
        fits = [i for i in range(shard.num_pieces)
                if (vocab.types[np.asarray(shard.piece(i))] == T.BAR).sum() > bars]  # fmt: skip
        pools.append((vocab.config.styles.index(style), shard, rng.permutation(fits)))
    out = []
    for k in range(n):
        style, shard, order = pools[k % len(pools)]
        ids = np.asarray(shard.piece(int(order[(k // len(pools)) % len(order)])), np.int64)
        end = np.flatnonzero(vocab.types[ids] == T.BAR)[bars]
        out.append((style, ids[:end]))
    return out


def sample_plans(model, vocab: Vocabulary, plans: list[ControlPlan], bars: int, seed: int,
                 batch: int = 16, guidance: float = 1.0, steer: float = 0.0,
                 best_of: int = 1) -> list[np.ndarray]:  # fmt: skip
    """One piece of ``bars`` bars per plan (ids, PAD removed), ``batch`` at a time, under
    classifier-free ``guidance`` of the controls and ``steer`` (see
    :mod:`aurl.generate.steer`); with ``best_of`` N, the candidate of N that follows its
    plan best as read back (:func:`~aurl.evaluate.adherence.request_score`), as
    ``Generator.generate`` keeps it."""
    generator = torch.Generator().manual_seed(seed)
    config = SamplingConfig(top_p=SAMPLING.top_p, guidance=guidance, steer=steer,
                            best_of=best_of)  # fmt: skip
    out: list[np.ndarray] = []
    for first in range(0, len(plans), batch):
        part = plans[first : first + batch]
        prompts = [torch.as_tensor(plan_prompt(p, vocab)) for p in part]
        rows = sample(model, vocab, prompts, bars, bars * 512, config, generator, plans=part,
                      judge=request_judge(part, vocab))  # fmt: skip
        out += [row[row != PAD].numpy() for row in rows]
    return out


def adherence_report(model, vocab: Vocabulary, num: int, bars: int, seed: int) -> dict:
    """Adherence of ``num`` pieces to their own requests and to shuffled ones."""
    if not vocab.has_controls:
        raise ValueError("this model was trained without controls")
    plans = random_requests(num, vocab, seed)
    t0 = time.perf_counter()
    readings = [read_piece(ids, vocab) for ids in sample_plans(model, vocab, plans, bars, seed)]
    return {"pieces": num, "bars": bars, "seconds": round(time.perf_counter() - t0, 1),
            "asked": adherence(plans, readings),
            "shuffled": adherence(shuffled(plans, seed), readings)}  # fmt: skip


def style_report(model, tokenizer, styles: list[str], per_style: int, bars: int, seed: int,
                 train_pieces: int = 200, log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """The style classifier on ``styles`` (corpus names the model knows): trained on up to
    ``train_pieces`` training pieces of each, measured on its test pieces and on
    ``per_style`` samples asked for it; every piece cropped to ``bars`` bars."""
    vocab = tokenizer.vocab
    unknown = [s for s in styles if s not in vocab.config.styles]
    if unknown or len(styles) < 2:
        raise ValueError(f"styles: give two or more of {', '.join(vocab.config.styles)}")
    rng = np.random.default_rng(seed)
    train_x, train_y, test_x, test_y = [], [], [], []
    for style in styles:
        log(f"style {style}: reading its pieces")
        data = source_dataset(style, tokenizer)
        for split, xs, ys, cap in (("train", train_x, train_y, train_pieces),
                                   ("test", test_x, test_y, train_pieces)):  # fmt: skip
            shard = Shard(data.split(split))
            pick = rng.permutation(shard.num_pieces)[:cap]
            xs += [_features(np.asarray(shard.piece(int(i)), np.int64), vocab, bars)
                   for i in pick]  # fmt: skip
            ys += [style] * len(pick)
    classifier = fit_styles(np.array(train_x), train_y)
    plans = [ControlPlan(style=vocab.config.styles.index(s)) for s in styles
             for _ in range(per_style)]  # fmt: skip
    asked = [s for s in styles for _ in range(per_style)]
    log(f"style: sampling {len(plans)} pieces")
    samples = [_features(ids, vocab, bars) for ids in sample_plans(model, vocab, plans, bars,
                                                                    seed)]  # fmt: skip
    shuffled_labels = list(np.random.default_rng(seed + 1).permutation(asked))
    per = {s: classifier.accuracy(np.array([x for x, a in zip(samples, asked, strict=True)
                                            if a == s]), [s] * per_style)
           for s in styles}  # fmt: skip
    return {"styles": styles, "train_pieces": len(train_y), "test_pieces": len(test_y),
            "bars": bars, "held_out_real": round(classifier.accuracy(np.array(test_x), test_y), 3),
            "samples_asked": round(classifier.accuracy(np.array(samples), asked), 3),
            "samples_shuffled": round(classifier.accuracy(np.array(samples), shuffled_labels), 3),
            "samples_per_style": {s: round(v, 3) for s, v in per.items()},
            "chance": round(1 / len(styles), 3)}  # fmt: skip


def _features(ids: np.ndarray, vocab: Vocabulary, bars: int) -> np.ndarray:
    return style_vector(crop_bars(ids_to_notes(ids, vocab), bars))


def controls_markdown(c: dict) -> list[str]:
    """The report's lines for an adherence report (and a style report, if there is one)."""
    lines = []
    a = c.get("adherence")
    if a:
        lines += ["## Control adherence", "",
                  f"{a['pieces']} pieces of {a['bars']} bars, each asked for a key, a four-bar "
                  "chord progression in it and one density, polyphony and register bin per bar; "
                  "read back from the notes and the analysis. *shuffled*: scored against "
                  "another piece's request (chance).", "",
                  "| control | measure | asked | shuffled |", "|---|---|---:|---:|"]  # fmt: skip
        for name, measures in a["asked"].items():
            for measure, value in measures.items():
                if measure not in ("bars", "pieces"):
                    base = a["shuffled"].get(name, {}).get(measure, float("nan"))
                    lines.append(f"| {name} | {measure} | {value:.3f} | {base:.3f} |")
        lines.append("")
    s = c.get("style")
    if s:
        per = ", ".join(f"{k} {v:.2f}" for k, v in s["samples_per_style"].items())
        lines += ["## Style", "",
                  f"A classifier of {', '.join(s['styles'])} from key- and instrument-free "
                  f"features, trained on {s['train_pieces']} real pieces (first {s['bars']} "
                  "bars). Accuracy:", "",
                  "| pieces | accuracy |", "|---|---:|",
                  f"| held-out real pieces ({s['test_pieces']}) | {s['held_out_real']:.3f} |",
                  f"| samples, the style asked | {s['samples_asked']:.3f} |",
                  f"| samples, a shuffled style | {s['samples_shuffled']:.3f} |",
                  f"| chance | {s['chance']:.3f} |", "", f"Per style asked: {per}.", ""]  # fmt: skip
    return lines
