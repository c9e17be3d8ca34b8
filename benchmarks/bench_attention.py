"""Attention variants on the chorales: the same shape, steps and data for each, then test NLL
and how 96-bar pieces hold together.

    .venv/bin/python benchmarks/bench_attention.py [--steps 300] [--bars 96] [--pieces 8] [--keep]
        [--width 128]

Variants (overrides of ``configs/ablation.yaml``): full attention (restarting from a bar near
the middle of the window when the context fills), a sliding window of 128 tokens (a ring
buffer: no restarts), hierarchical attention (the window plus one summary per finished
bar), and each with musical positions (bar in phrase, step in bar); ``--width 256`` trains
them at the shipped models' width (results in ``attention_256.*``). Results are written
after every variant; ``--keep`` skips the variants already measured with the same settings. For each:
the test NLL over the test split's 512-token windows, then ``--pieces`` pieces of ``--bars``
bars (top-p 0.95, one batch, seed 0) measured by :mod:`aurl.evaluate.long_pieces` against the
16-bar windows of the test split: main-key share, cadences at phrase ends, the longest
verbatim repeat, and feature overlap per 16-bar window, first and last windows side by side.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from aurl.api import TOKENS_PER_BAR_LIMIT
from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.evaluate.long_pieces import long_piece_report
from aurl.evaluate.notes import ids_to_notes
from aurl.generate.sampler import SamplingConfig, sample
from aurl.models import load_model
from aurl.models.calibration import use_fastest_attention
from aurl.paths import CHORALE_MODEL
from aurl.tokens import BOS, PAD, Tokenizer
from aurl.train.lm import train_run
from common import RESULTS_DIR, machine_info, machine_markdown, write_results

ROOT = Path(__file__).parents[1]
VARIANTS = {
    "full attention": [],
    "sliding window 128": ["model.window=128"],
    "hierarchical (window 128 + bar summaries)": ["model.window=128", "model.bar_summaries=true"],
    "full + musical positions": ["model.musical_positions=true"],
    "window 128 + musical positions": ["model.window=128", "model.musical_positions=true"],
    "hierarchical + musical positions": [
        "model.window=128",
        "model.bar_summaries=true",
        "model.musical_positions=true",
    ],
}
PACKAGES = ("aurl", "torch", "numpy")


def long_pieces(folder, reference, bars: int, pieces: int) -> dict:
    """``pieces`` pieces of ``bars`` bars from one model, measured against ``reference``."""
    model, tokenizer = folder.model.eval(), folder.tokenizer
    prompt = torch.full((pieces, 1), BOS, dtype=torch.long)
    out = sample(model, tokenizer.vocab, prompt, bars, bars * TOKENS_PER_BAR_LIMIT,
                 SamplingConfig(top_p=0.95), torch.Generator().manual_seed(0))  # fmt: skip
    ids = [row[row != PAD].numpy() for row in out]
    notes = [ids_to_notes(i, tokenizer.vocab) for i in ids]
    scores = [tokenizer.decode(i) for i in ids]
    report = long_piece_report(ids, notes, scores, reference, tokenizer.vocab)
    report["tokens"] = sum(len(i) - 1 for i in ids)
    return report


def references(test: Shard, tokenizer: Tokenizer, reference, bars: int, pieces: int) -> dict:
    """The same measures for the test chorales themselves (whole pieces; most are shorter
    than 32 bars, so first and last windows overlap) and for the shipped model."""
    vocab = tokenizer.vocab
    ids = [test.piece(i) for i in range(test.num_pieces)]
    notes = [ids_to_notes(i, vocab) for i in ids]
    report = long_piece_report(ids, notes, [tokenizer.decode(i) for i in ids], reference, vocab)
    report["pieces"] = len(ids)
    shipped = load_model(CHORALE_MODEL)
    use_fastest_attention(shipped.model, torch.device("cpu"))
    return {"test chorales": report,
            "shipped bach-small (full attention, 256 wide, 900 steps)":
                long_pieces(shipped, reference, bars, pieces)}  # fmt: skip


def run_variant(name: str, overrides: list[str], where: Path, steps: int, reference,
                bars: int, pieces: int, width: int) -> dict:  # fmt: skip
    config = load_config(ROOT / "configs" / "ablation.yaml",
                         [*overrides, f"train.max_steps={steps}", f"model.n_embd={width}"])  # fmt: skip
    t0 = time.perf_counter()
    meta = train_run(config, where / name.replace(" ", "-"), progress=False, log=lambda _: None)
    train_s = time.perf_counter() - t0
    folder = load_model(where / name.replace(" ", "-") / "model")
    print(f"{name}: test NLL {meta['metrics']['test_nll_per_token']:.4f} ({train_s:.0f} s)",
          flush=True)  # fmt: skip
    return {"overrides": overrides, "parameters": meta.get("parameters"),
            "test_nll": meta["metrics"]["test_nll_per_token"], "train_s": round(train_s, 1),
            "long": long_pieces(folder, reference, bars, pieces)}  # fmt: skip


def render(r: dict, info: dict) -> str:
    rows = []
    for name, v in r["variants"].items():
        lp = v["long"]
        f, last = lp["first"], lp["last"]
        rows.append(
            f"| {name} | {v['test_nll']:.4f} | {_pct(lp['main_key_share'])} | "
            f"{_num(f['mean_oa'])} / {_num(last['mean_oa'])} | "
            f"{_pct(f['main_key_share'])} / {_pct(last['main_key_share'])} | "
            f"{_pct(f['cadence_share'])} / {_pct(last['cadence_share'])} | "
            f"{lp['longest_repeat_bars']} |"
        )
    for name, lp in r.get("references", {}).items():
        f, last = lp["first"], lp["last"]
        rows.append(
            f"| *{name}* | - | {_pct(lp['main_key_share'])} | "
            f"{_num(f['mean_oa'])} / {_num(last['mean_oa'])} | "
            f"{_pct(f['main_key_share'])} / {_pct(last['main_key_share'])} | "
            f"{_pct(f['cadence_share'])} / {_pct(last['cadence_share'])} | "
            f"{lp['longest_repeat_bars']} |"
        )
    best = min(r["variants"], key=lambda k: r["variants"][k]["test_nll"], default="-")
    return "\n".join([
        "# Attention variants (chorales)",
        "",
        f"`configs/ablation.yaml` at {r.get('width', 128)} wide ({r['parameters']:,} "
        "parameters with full attention), "
        f"{r['steps']} steps of {r['batch']} x {r['seq_len']} tokens for every variant, same "
        f"data and seed. Long pieces: {r['pieces']} pieces of {r['bars']} bars per variant, "
        "top-p 0.95, seed 0, against the 16-bar windows of the test split.",
        "",
        "| variant | test NLL | beats in main key | feature OA, first / last 16 bars | "
        "main key, first / last | cadences at phrase ends, first / last | longest repeat "
        "(bars) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Lowest test NLL: **{best}**.",
        "",
        "Feature OA: mean overlapping area of the scalar features (pitch range, polyphony, "
        "note length, ...) of that 16-bar window of the generated pieces against all 16-bar "
        "windows of the test pieces (1 = indistinguishable). Main key: share of beats whose "
        "local key (the key analysis) is the piece's global key. Cadences: share of phrase "
        "ends (melody phrase boundaries) that form a cadence. Speed is measured apart, on an "
        "idle machine (`benchmarks/bench_long.py`).",
        "",
        machine_markdown(info),
    ])  # fmt: skip


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--bars", type=int, default=96)
    parser.add_argument("--pieces", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--keep", action="store_true", help="keep the variants already in the results file"
    )
    parser.add_argument("--width", type=int, default=128, help="model.n_embd of every variant")
    args = parser.parse_args()
    torch.set_num_threads(2)
    base = load_config(ROOT / "configs" / "ablation.yaml")
    dataset = prepare(resolve_source("bach", 2, False), Tokenizer(base.tokenizer), progress=False)
    test = Shard(dataset.split("test"))
    vocab = Tokenizer(base.tokenizer).vocab
    reference = [ids_to_notes(test.piece(i), vocab) for i in range(test.num_pieces)]
    results = {"steps": args.steps, "bars": args.bars, "pieces": args.pieces,
               "batch": base.train.batch_size, "seq_len": base.data.seq_len, "variants": {},
               "width": args.width}  # fmt: skip
    previous = RESULTS_DIR / f"{_name(args.width)}.json"
    if args.keep and previous.is_file():  # variants measured before with the same settings
        old = json.loads(previous.read_text())["results"]
        old.setdefault("width", 128)
        same = all(old.get(k) == results[k] for k in ("steps", "bars", "pieces", "width"))
        results["variants"] = old["variants"] if same else {}
        if same and "references" in old:
            results["references"] = old["references"]
    if "references" not in results:
        results["references"] = references(test, Tokenizer(base.tokenizer), reference, args.bars,
                                           args.pieces)  # fmt: skip
        save(results)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            if name in results["variants"]:
                continue
            results["variants"][name] = run_variant(name, VARIANTS[name], Path(tmp), args.steps,
                                                    reference, args.bars, args.pieces,
                                                    args.width)  # fmt: skip
            save(results)  # a variant at a time: a killed run keeps what it measured
    md = save(results)
    print(md)


def save(results: dict) -> str:
    first = next(iter(results["variants"].values()), {})
    results["parameters"] = first.get("parameters") or 0
    info = machine_info(PACKAGES)
    md = render(results, info)
    name = _name(results["width"])
    write_results(name, {"benchmark": "attention", "machine": info, "results": results}, md)
    return md


def _name(width: int) -> str:
    """The results' file name: ``attention`` at the ablation's own width, else with it."""
    return "attention" if width == 128 else f"attention_{width}"


if __name__ == "__main__":
    main()
