"""Infilling and harmonizing with a model trained for them, on the test chorales.

1. Is a gap predicted better when the model sees both sides of it? For ``--spans`` gaps of
   two to four bars, with ``--context`` bars on each side, the negative log-likelihood of
   the gap's note tokens (Position, Track, Pitch, Velocity, Duration), two ways from the
   same ids: both sides (the infilling layout: the gap marked Fill, the bars after it, then
   Infill, the bars before the gap that the model's layout repeats, and the gap's bars) and
   left only (the ordinary layout up to the gap's end); also
   for the gap's first and last bar alone. The
   pieces' control tokens are left out of both (in the left-only layout a gap's own Chord
   and Density would otherwise come right before its notes).
2. Joins: ``aurl infill`` on ``--fills`` gaps of two to four bars; leaps and parallel fifths
   and octaves in the moves across the gap's two joins (both, and each apart), against the
   same joins of the chorales themselves.
3. Harmonizing: ``aurl harmonize`` on the soprano of ``--melodies`` test chorales; voice
   ranges, crossings, parallels and leaps of the four voices, against the chorales.

Writes benchmarks/results/infill.md and infill.json (``--name`` for another name).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.api import load
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.evaluate.voice_leading import VoiceLeading, satb_tracks, voice_leading
from aurl.fileio import atomic_write_json, atomic_write_text
from aurl.generate.sampler import SamplingConfig
from aurl.midi import read_midi, write_midi
from aurl.tokens import TokenType
from aurl.tokens.controls import CONTROL_TYPES, drop_controls
from aurl.tokens.grammar import bar_starts
from aurl.tokens.infill import context_bars, infill_example
from common import RESULTS_DIR, machine_info, machine_markdown

T = TokenType
NOTE_TYPES = [int(k) for k in (T.POSITION, T.TRACK, T.PITCH, T.VELOCITY, T.DURATION)]
PACKAGES = ("aurl", "torch", "numpy")


def window(ids: np.ndarray, vocab, first: int, last: int) -> np.ndarray:
    """The piece's head and bars ``first`` to ``last - 1`` (with the first one's TimeSig)."""
    types = vocab.types[ids]
    bars = np.flatnonzero(types == T.BAR)
    head = ids[: bars[0]]
    end = bars[last] if last < len(bars) else len(ids) - (ids[-1] == 2)
    body = ids[bars[first] : end]
    sig = ids[bars[0] + 1 : bars[0] + 2]
    if (
        first
        and vocab.types[body[1]] != T.TIMESIG
        and len(sig)
        and vocab.types[sig[0]] == T.TIMESIG
    ):
        body = np.concatenate([body[:1], sig, body[1:]])
    return np.concatenate([head, body])


@torch.inference_mode()
def token_nll(model, ids: np.ndarray) -> np.ndarray:
    """The NLL (nats) of every token of ``ids`` given those before it (0 for the first)."""
    logp = torch.log_softmax(model(torch.as_tensor(ids[None, :-1]))[0].float(), -1)
    nll = -logp.gather(1, torch.as_tensor(ids[1:, None]))[:, 0].numpy()
    return np.concatenate([[0.0], nll])


def gap_pair(model, vocab, ids: np.ndarray, rng, context: int) -> dict | None:
    """For one random gap, the summed NLL of its note tokens with both sides and with the
    left only, and their count; also for its first and its last bar alone."""
    n = int((vocab.types[ids] == T.BAR).sum())
    size = int(rng.integers(2, 5))
    if n < size + 2 * context:
        return None
    first = int(rng.integers(context, n - size - context + 1))
    part = window(ids, vocab, first - context, first + size + context)
    both = infill_example(part, vocab, context, size)
    if len(both) > model.config.max_seq_len + 1:
        return None
    types = vocab.types[both]
    after = np.arange(len(both)) > np.flatnonzero(types == T.INFILL)[0]
    # the gap's bar, in the second pass (past the bars it repeats before the gap)
    both_bar = np.cumsum((types == T.BAR) & after) - 1 - context_bars(vocab, context)
    both_scored = after & (both_bar >= 0) & np.isin(types, NOTE_TYPES)
    left = window(ids, vocab, first - context, first + size)
    left_bar = np.cumsum(vocab.types[left] == T.BAR) - 1 - context
    left_scored = (left_bar >= 0) & np.isin(vocab.types[left], NOTE_TYPES)
    if not both_scored.sum() or both_scored.sum() != left_scored.sum():
        return None
    nll_both, nll_left = token_nll(model, both), token_nll(model, left)
    out = {}
    for name, bar in (("gap", None), ("first bar", 0), ("last bar", size - 1)):
        b = both_scored if bar is None else both_scored & (both_bar == bar)
        lo = left_scored if bar is None else left_scored & (left_bar == bar)
        if b.sum() == lo.sum():
            out[name] = (float(nll_both[b].sum()), float(nll_left[lo].sum()), int(b.sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--context", type=int, default=2)
    parser.add_argument("--fills", type=int, default=120)
    parser.add_argument("--melodies", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steer", type=float, default=0.0,
                        help="steering strength of the infills and harmonizations")  # fmt: skip
    parser.add_argument("--name", default="infill", help="results file name")
    args = parser.parse_args()
    gen = load(args.model, "cpu", threads=args.threads, backend="torch")
    vocab = gen.tokenizer.vocab
    if not vocab.has_infill:
        raise SystemExit(f"{args.model}: this model has no infilling tokens")
    source = resolve_source(gen.folder.meta.get("data_source", "bach"), 2, False)
    dataset = prepare(source, gen.tokenizer, workers=2, progress=False)
    test = Shard(dataset.split("test"))
    rng = np.random.default_rng(args.seed)
    pairs = []
    while len(pairs) < args.spans:
        ids = np.asarray(test.piece(int(rng.integers(0, test.num_pieces))), np.int64)
        ids = drop_controls(ids, vocab, CONTROL_TYPES)  # a gap's own controls would tell
        pair = gap_pair(gen.model, vocab, ids, rng, args.context)
        if pair is not None:
            pairs.append(pair)
    both, left, tokens = (np.array(x) for x in zip(*[p["gap"] for p in pairs], strict=True))
    result = {
        "model": args.model,
        "spans": len(pairs),
        "context_bars": args.context,
        "tokens": int(tokens.sum()),
        "nll_both_sides": round(float(both.sum() / tokens.sum()), 4),
        "nll_left_only": round(float(left.sum() / tokens.sum()), 4),
        "spans_better_with_both": round(float((both < left).mean()), 4),
        "by_bar": {
            name: pooled([p[name] for p in pairs if name in p])
            for name in ("first bar", "last bar")
        },  # fmt: skip
    }
    files = [f for f in test_files(dataset) if satb_tracks(read_midi(f)) is not None]
    sampling = SamplingConfig(steer=args.steer)
    result["steer"] = args.steer
    result["joins"] = joins(gen, files, args.fills, rng, sampling)
    result["harmonize"] = harmonize(gen, files[: args.melodies], args.seed, sampling)
    result["machine"] = machine_info(PACKAGES)
    atomic_write_json(RESULTS_DIR / f"{args.name}.json", result)
    atomic_write_text(RESULTS_DIR / f"{args.name}.md", markdown(result))
    print(markdown(result))


def pooled(rows: list[tuple[float, float, int]]) -> dict:
    """NLL per token with both sides and with the left only, pooled over ``rows``."""
    both, left, n = (sum(x) for x in zip(*rows, strict=True))
    return {"both_sides": round(both / n, 4), "left_only": round(left / n, 4), "tokens": n}


def test_files(dataset) -> list[Path]:
    """The MIDI files of the dataset's test pieces."""
    lines = (dataset.split("test") / "metadata.jsonl").read_text().splitlines()
    return [Path(json.loads(line)["source"]) for line in lines if line.strip()]


def joins(gen, files: list[Path], n: int, rng, sampling: SamplingConfig) -> dict:
    """Leaps and parallels across the joins of infilled gaps, against the chorales': both
    joins, and the left and the right one apart."""
    vocab = gen.tokenizer.vocab
    made = {side: VoiceLeading() for side in ("both", "left", "right")}
    real = {side: VoiceLeading() for side in ("both", "left", "right")}
    for k in range(n):
        path = files[k % len(files)]
        score = read_midi(path)
        ids = gen.tokenizer.encode(score)
        starts = bar_starts(ids, vocab) * score.tpq // vocab.config.steps_per_quarter
        bars = len(starts) - 1
        size = int(rng.integers(2, 5))
        if bars < size + 2:
            continue
        first = int(rng.integers(1, bars - size))
        out = gen.infill(path, f"{first + 1}-{first + size}", sampling=sampling, seed=k)
        out = out.pieces[0].score
        at = {"left": starts[first], "right": starts[first + size]}
        at["both"] = [at["left"], at["right"]]
        for side, times in at.items():
            made[side] += voice_leading(out, satb_tracks(out), around=np.atleast_1d(times))
            real[side] += voice_leading(score, satb_tracks(score), around=np.atleast_1d(times))
    rates = {"model": made["both"].rates(), "chorales": real["both"].rates(),
             "moves": made["both"].moves}  # fmt: skip
    for side in ("left", "right"):
        rates[f"model, {side} join"] = made[side].rates()
        rates[f"chorales, {side} join"] = real[side].rates()
    return rates


def harmonize(gen, files: list[Path], seed: int, sampling: SamplingConfig) -> dict:
    """The voice leading of harmonized chorale sopranos, against the chorales'."""
    made, real = VoiceLeading(), VoiceLeading()
    with tempfile.TemporaryDirectory() as tmp:
        for k, path in enumerate(files):
            score = read_midi(path)
            satb = satb_tracks(score)
            melody = symusic.Score(score.tpq)
            melody.tracks.append(score.tracks[satb[0]].copy())
            melody.tempos, melody.time_signatures = score.tempos, score.time_signatures
            out = gen.harmonize(write_midi(melody, Path(tmp) / f"m{k}.mid"), sampling=sampling,
                                seed=seed + k)  # fmt: skip
            result = out.pieces[0].score
            made += voice_leading(result, satb_tracks(result))
            real += voice_leading(score, satb)
    return {"model": made.rates(), "chorales": real.rates(), "pieces": len(files)}


def markdown(r: dict) -> str:
    return "\n".join([
        "# Infilling: both sides against the left side only",
        "",
        f"{r['spans']} gaps of 2-4 bars in the test pieces, {r['context_bars']} bars of context "
        f"on each side, model `{r['model']}`; NLL of the gaps' {r['tokens']} note tokens "
        "(Position, Track, Pitch, Velocity, Duration), in nats per token.",
        "",
        "| layout | NLL per note token |",
        "|---|---:|",
        f"| both sides (Fill ... Infill gap) | {r['nll_both_sides']:.4f} |",
        f"| left side only (a continuation) | {r['nll_left_only']:.4f} |",
        "",
        f"Gaps predicted better with both sides: {r['spans_better_with_both']:.0%}. By the "
        "gap's bars (the gaps whose bar holds as many note tokens in both layouts):",
        "",
        "| the gap's | both sides | left side only | note tokens |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {v['both_sides']:.4f} | {v['left_only']:.4f} | {v['tokens']} |"
          for name, v in r["by_bar"].items()),
        "",
        "Voice leading (shares: leaps of more than a fifth per melodic move; parallel fifths "
        "and octaves per move of two voices; crossings, and seconds, tritones and sevenths, "
        "per pair of voices sounding; rests per voice at an onset of any; notes outside the "
        "usual SATB ranges):",
        "",
        "| what | by | leaps | parallels | crossings | dissonant | rests | out of range |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {what} | {who} | {v['leaps']:.3f} | {v['parallels']:.3f} | {v['crossings']:.3f} "
          f"| {v['dissonant']:.3f} | {v['rests']:.3f} | {v['out_of_range']:.3f} |"
          for what, key in (("moves across infilled joins", "joins"),
                            ("harmonized sopranos", "harmonize"))
          for who, v in r[key].items() if isinstance(v, dict)),
        "",
        f"Joins: {r['joins']['moves']} moves across the joins of infilled gaps (bars 2-4 long; "
        "the chorales' row: the same joins in the original pieces). Harmonized: "
        f"{r['harmonize']['pieces']} test chorales' sopranos, all four voices counted. "
        f"Steering strength of both: {r.get('steer', 0):g} (`aurl.generate.steer`: in the "
        "second pass, a pitch outside its voice's range, a leap past a fifth, a parallel fifth "
        "or octave with a written or kept voice, a crossing, a dissonance with a voice "
        "sounding, a voice left silent, and in a gap's last bar a leap or parallel into the "
        "music after it lose nats).",
        "",
        machine_markdown(r["machine"]),
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
