"""Control adherence: how well a model trained with controls follows them.

Two kinds of requests, ``--num`` of each: *random* (a Bach-style piece in a random key with a
four-bar progression in it, and one density, polyphony and register bin for all bars, each
drawn on its own: some combinations no real piece holds) and *held-out* (the controls of the
first ``--bars`` bars of test pieces of several corpora, in their own style: requests that a
real piece met). One piece per request with the model at ``--model``, for every setting of
``--settings`` (a classifier-free guidance scale, and after a colon a steering strength:
``2:1``); every piece read back as training pieces are labelled
(``aurl.evaluate.adherence``) and scored against its own request and, as the chance baseline,
against another piece's request (requests shuffled). The held-out pieces themselves, scored
against their own controls, give each measure's ceiling (1 for the bins, which are read the
same way; below 1 for key and chords, which the analysis reads again from the notes).
What following the controls costs the music: the samples' nats per note under the same
model with their controls left out (the held-out pieces' own figure beside them).

The cost of controls: the test chorales' negative log-likelihood in nats per note (every
token but the controls counted, so that vocabularies compare), for this model with all its
controls given and with none, and for bach-small (no tracks, no controls).

Writes benchmarks/results/controls.md and controls.json (``--name`` for another name).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aurl.api import load
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.evaluate.adherence import adherence, read_piece, shuffled
from aurl.evaluate.controls_eval import (
    held_out_pieces,
    piece_plan,
    random_requests,
    sample_plans,
)
from aurl.fileio import atomic_write_json, atomic_write_text
from aurl.tokens import TokenType
from aurl.tokens.controls import CONTROL_TYPES, drop_controls
from common import RESULTS_DIR, machine_info, machine_markdown

T = TokenType
PACKAGES = ("aurl", "torch", "numpy")


@torch.inference_mode()
def nats_per_note(model, vocab, pieces: list[np.ndarray], keep_controls: bool) -> float:
    """Summed NLL of every non-control token over the number of notes; each piece in
    consecutive windows of the model's context, later windows after the piece's head (what
    precedes its first Bar) when the vocabulary has one, as training windows are."""
    ctx = model.config.max_seq_len
    total, notes = 0.0, 0
    for ids in pieces:
        ids = ids if keep_controls else drop_controls(ids, vocab, CONTROL_TYPES)
        head_len = int(np.flatnonzero(vocab.types[ids] == T.BAR)[0])
        head = ids[:head_len] if (vocab.has_tracks or vocab.has_controls) else ids[:0]
        notes += int((vocab.types[ids] == T.PITCH).sum())
        start = 0
        while start < len(ids) - 1:
            prefix = head if start else ids[:0]
            end = min(len(ids), start + ctx + 1 - len(prefix))
            seq = np.concatenate([prefix, ids[start:end]])
            logp = torch.log_softmax(model(torch.as_tensor(seq[None, :-1]))[0].float(), -1)
            nll = -logp.gather(1, torch.as_tensor(seq[1:, None]))[:, 0].numpy()
            scored = ~np.isin(vocab.types[seq[1:]], [int(k) for k in CONTROL_TYPES])
            scored[: len(prefix)] = False  # the head again, and the token scored before
            total += float(nll[scored].sum())
            start = end - 1
    return total / max(notes, 1)


def cost(gen, pieces: int) -> dict:
    """Nats per note of the first ``pieces`` test chorales: this model with and without its
    controls, and bach-small."""
    shipped = load("bach-small", "cpu", backend="torch")
    out = {}
    for name, g, keep in (("with controls", gen, True), ("without controls", gen, False),
                          ("bach-small", shipped, True)):  # fmt: skip
        test = Shard(prepare(resolve_source("bach", 2, False), g.tokenizer, workers=2,
                             progress=False).split("test"))  # fmt: skip
        ids = [np.asarray(test.piece(i), np.int64) for i in range(min(pieces, test.num_pieces))]
        out[name] = round(nats_per_note(g.model, g.tokenizer.vocab, ids, keep), 4)
    return out


STYLES = ("bach", "palestrina", "essen", "oneills")


def requests(kind: str, gen, num: int, bars: int, seed: int):
    """The plans of one kind of request, and for held-out ones the real pieces' ids."""
    vocab = gen.tokenizer.vocab
    if kind == "random":
        return random_requests(num, vocab, seed), None
    pieces = held_out_pieces(num, gen.tokenizer, STYLES, bars, seed)
    return [piece_plan(ids, vocab, bars, style) for style, ids in pieces], [p for _, p in pieces]


def setting(text: str) -> tuple[float, float, int]:
    """A ``--settings`` item: guidance scale, steering strength (0 when not given) and
    best-of N (1 when not given): ``g``, ``g:s`` or ``g:s:n``."""
    parts = text.split(":")
    g, s, n = parts + ["0", "1"][len(parts) - 1 :]
    return float(g), float(s or 0), int(n or 1)


def label(g: float, s: float, n: int = 1) -> str:
    return f"g = {g:g}" + (f", s = {s:g}" if s else "") + (f", best of {n}" if n > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--settings",
        default="1,2,3,2:1,2:2,2:3",
        help="guidance scales with optional steering strengths and best-of, like 2:1 or 1:2:4",
    )
    parser.add_argument("--cost-pieces", type=int, default=24)
    parser.add_argument("--name", default="controls", help="results file name")
    args = parser.parse_args()
    gen = load(args.model, "cpu", threads=args.threads, backend="torch")
    vocab = gen.tokenizer.vocab
    if not vocab.has_controls:
        raise SystemExit(f"{args.model}: this model has no control tokens")
    runs = {}
    for kind in ("random", "held-out"):
        plans, real = requests(kind, gen, args.num, args.bars, args.seed)
        runs[kind] = {"real": None, "settings": {}}
        if real:
            runs[kind]["real"] = {
                "asked": adherence(plans, [read_piece(i, vocab) for i in real]),
                "nats": round(nats_per_note(gen.model, vocab, real, False), 4),
            }
        for g, s, n in [setting(x) for x in args.settings.split(",")]:
            t0 = time.perf_counter()
            samples = sample_plans(gen.model, vocab, plans, args.bars, args.seed, args.batch,
                                   g, s, n)  # fmt: skip
            seconds = round(time.perf_counter() - t0, 1)
            readings = [read_piece(ids, vocab) for ids in samples]
            runs[kind]["settings"][label(g, s, n)] = {
                "seconds": seconds,
                "asked": adherence(plans, readings),
                "shuffled": adherence(shuffled(plans, args.seed), readings),
                "nats": round(nats_per_note(gen.model, vocab, samples, False), 4),
            }
            print(kind, label(g, s, n), runs[kind]["settings"][label(g, s, n)], flush=True)
    result = {"model": args.model, "pieces": args.num, "bars": args.bars, "styles": STYLES,
              "runs": runs, "nats_per_note": cost(gen, args.cost_pieces),
              "machine": machine_info(PACKAGES)}  # fmt: skip
    atomic_write_json(RESULTS_DIR / f"{args.name}.json", result)
    atomic_write_text(RESULTS_DIR / f"{args.name}.md", markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = ["# Control adherence", "",
             f"{r['pieces']} pieces of {r['bars']} bars from `{r['model']}` per kind of request "
             "and setting. *random*: Bach style, a random key, a four-bar progression in it "
             "(cycled), one density, polyphony and register bin for all bars, each drawn on its "
             "own (some combinations no real piece holds). *held-out*: the controls of the "
             f"first {r['bars']} bars of test pieces of {', '.join(r['styles'])} in turn, in "
             "their own style. Read back from the notes (the bins) and the analysis (key, "
             "chords). *g*: classifier-free guidance scale (1: the plain model; each step "
             "computed twice above 1). *s*: steering strength (`aurl.generate.steer`: pitches "
             "outside the bar's chord, or the key, lose 2s nats, the key's tonic and dominant "
             "gain up to s/2; moving on with too few or too "
             "many notes for the bar's density loses or gains s nats per bin width). "
             "*shuffled*: the first setting's pieces scored against another piece's request "
             "(chance). *real*: the held-out pieces themselves against their own controls (the "
             "ceiling of what the analysis reads back). *nats per note*: the pieces under the "
             "same model with their controls left out (what following them costs the music).",
             ""]  # fmt: skip
    for kind, run in r["runs"].items():
        lines += _table(kind, run["settings"], run["real"])
    cost = r["nats_per_note"]
    lines += ["The cost of controls: test chorales' negative log-likelihood in nats per note "
              "(every token but the controls counted):", "",
              "| model | nats per note |", "|---|---:|",
              *(f"| {name} | {value:.4f} |" for name, value in cost.items()),
              "", machine_markdown(r["machine"]), ""]  # fmt: skip
    return "\n".join(lines)


def _table(kind: str, settings: dict, real: dict | None) -> list[str]:
    names = list(settings)
    head = [*names, "shuffled"] + (["real"] if real else [])
    lines = [f"## {kind} requests", "", "| control | measure | " + " | ".join(head) + " |",
             "|---|---|" + "---:|" * len(head)]  # fmt: skip
    first = settings[names[0]]
    for name, measures in first["asked"].items():
        for measure in measures:
            if measure in ("bars", "pieces"):
                continue
            cells = [settings[g]["asked"][name][measure] for g in names]
            cells.append(first["shuffled"].get(name, {}).get(measure, float("nan")))
            if real:
                cells.append(real["asked"].get(name, {}).get(measure, float("nan")))
            lines.append(f"| {name} | {measure} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    nats = [settings[g]["nats"] for g in names] + [float("nan")] + ([real["nats"]] if real else [])
    lines.append("| music | nats per note | " + " | ".join(f"{c:.3f}" for c in nats) + " |")
    seconds = ", ".join(f"{g}: {settings[g]['seconds']} s" for g in names)
    return [*lines, "", f"Generation time: {seconds}.", ""]


if __name__ == "__main__":
    main()
