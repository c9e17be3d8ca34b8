"""A model trained on many corpora, corpus by corpus, against the models trained on one.

For every corpus that ships with music21: the negative log-likelihood of its test pieces in
nats per note (every token but the control tokens counted, so that vocabularies compare;
the same first ``--pieces`` test pieces for every model), for ``--model`` with its controls
given (its Style names the corpus) and with none, and for each ``--baseline``. Then the style
classifier (``aurl.evaluate.controls_eval.style_report``) over the corpora: held-out real
pieces, samples asked for each style, and the same samples with shuffled labels.

The rule for the default model: its chorale NLL per note within 5% of the shipped model's.

Writes benchmarks/results/corpora.md and corpora.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aurl.api import load
from aurl.data.corpora import corpus_names
from aurl.data.shards import Shard
from aurl.evaluate.controls_eval import style_report
from aurl.evaluate.datasets import source_dataset
from aurl.fileio import atomic_write_json, atomic_write_text
from aurl.tokens import TokenType
from aurl.tokens.controls import CONTROL_TYPES, drop_controls, style_index
from bench_controls import nats_per_note
from common import RESULTS_DIR, machine_info, machine_markdown

PACKAGES = ("aurl", "torch", "numpy")


def test_pieces(corpus: str, tokenizer, count: int) -> list[np.ndarray]:
    """The first ``count`` test pieces of a corpus, prepared with ``tokenizer``."""
    test = Shard(source_dataset(corpus, tokenizer).split("test"))
    return [np.asarray(test.piece(i), np.int64) for i in range(min(count, test.num_pieces))]


def corpus_nll(gen, corpus: str, count: int, controls: str) -> dict:
    """Nats per note of a corpus's test pieces with ``controls``: ``all`` (the Style and every
    control token the pieces hold), ``style`` (the Style alone: what ``aurl generate`` gives
    when no control is asked for) or ``none``."""
    vocab = gen.tokenizer.vocab
    pieces = test_pieces(corpus, gen.tokenizer, count)
    if controls == "style" and vocab.has_controls:
        pieces = [drop_controls(p, vocab, [k for k in CONTROL_TYPES if k != TokenType.STYLE])
                  for p in pieces]  # fmt: skip
    if controls != "none":
        pieces = [_styled(p, corpus, vocab) for p in pieces]
    keep = controls != "none"
    return {"pieces": len(pieces),
            "nats_per_note": round(nats_per_note(gen.model, vocab, pieces, keep), 4)}  # fmt: skip


def _styled(ids: np.ndarray, corpus: str, vocab) -> np.ndarray:
    """A test piece with its Style token after BOS, as training windows have it."""
    index = style_index(corpus, vocab)
    if index < 0 or not vocab.has_controls or vocab.types[ids[1]] == TokenType.STYLE:
        return ids
    return np.insert(ids, 1, vocab.token(TokenType.STYLE, index))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--baseline", action="append", default=None,
                    help="Models to compare with (default: the shipped bach-small).")  # fmt: skip
    ap.add_argument("--pieces", type=int, default=40, help="test pieces per corpus")
    ap.add_argument("--per-style", type=int, default=16, help="samples per style")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gen = load(args.model, "cpu", threads=2, backend="torch")
    baselines = {
        name: load(name, "cpu", threads=2, backend="torch")
        for name in args.baseline or ["bach-small"]
    }
    rows = {}
    for corpus in corpus_names():
        row = {"with controls": corpus_nll(gen, corpus, args.pieces, "all"),
               "style only": corpus_nll(gen, corpus, args.pieces, "style"),
               "without controls": corpus_nll(gen, corpus, args.pieces, "none")}  # fmt: skip
        for name, g in baselines.items():
            row[name] = corpus_nll(g, corpus, args.pieces, "all")
        rows[corpus] = row
        print(corpus, {k: v["nats_per_note"] for k, v in row.items()}, flush=True)
    style = style_report(gen.model, gen.tokenizer, corpus_names(), args.per_style, args.bars,
                         args.seed)  # fmt: skip
    print("style", style)
    first = next(iter(baselines))
    # The default is judged as `aurl generate` uses it: the chorales' Style and nothing else.
    ours, theirs = (rows["bach"]["style only"]["nats_per_note"],
                    rows["bach"][first]["nats_per_note"])  # fmt: skip
    result = {"model": args.model, "baselines": list(baselines), "pieces": args.pieces,
              "corpora": rows, "style": style,
              "chorale_ratio": round(ours / theirs, 4), "default": ours <= 1.05 * theirs,
              "seconds": round(time.perf_counter() - t0, 1),
              "machine": machine_info(PACKAGES)}  # fmt: skip
    atomic_write_json(RESULTS_DIR / "corpora.json", result)
    atomic_write_text(RESULTS_DIR / "corpora.md", markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    names = ["with controls", "style only", "without controls", *r["baselines"]]
    lines = ["# One model, many corpora", "",
             f"`{r['model']}` on the test pieces of every corpus that ships with music21 (the "
             f"first {r['pieces']} of each), in nats per note (every token but the controls "
             "counted). *with controls*: its Style token names the corpus and the other control "
             "tokens are as the pieces hold them (key, and each bar's chord, density, polyphony, "
             "register); *style only*: the Style token alone, as `aurl generate` gives it when "
             "no control is asked for; *without*: no control token at all. The baselines see "
             "their own tokens (no controls). Lower is better.", "",
             "| corpus | pieces | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]  # fmt: skip
    for corpus, row in r["corpora"].items():
        cells = " | ".join(f"{row[n]['nats_per_note']:.3f}" for n in names)
        lines.append(f"| {corpus} | {row[names[0]]['pieces']} | {cells} |")
    s = r["style"]
    lines += ["", f"Chorales, style only: {r['chorale_ratio']:.3f} x the nats per note of "
              f"`{r['baselines'][0]}` (the rule for the default: at most 1.05), so this model "
              f"{'qualifies as' if r['default'] else 'is not'} the default.", "",
              "## Style", "",
              f"A classifier of the {len(s['styles'])} corpora from key- and instrument-free "
              f"features, trained on {s['train_pieces']} real pieces (first {s['bars']} bars):", "",
              "| pieces | accuracy |", "|---|---:|",
              f"| held-out real pieces ({s['test_pieces']}) | {s['held_out_real']:.3f} |",
              f"| samples asked for a style | {s['samples_asked']:.3f} |",
              f"| the same samples, shuffled styles | {s['samples_shuffled']:.3f} |",
              f"| chance | {s['chance']:.3f} |", "",
              "Per style asked: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                              s["samples_per_style"].items()) + ".", "",
              f"Took {r['seconds']} s.", "", machine_markdown(r["machine"]), ""]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
