"""The ONNX backend against eager PyTorch on CPU: speed, test likelihood, greedy agreement.

    .venv/bin/python benchmarks/bench_onnx.py [--model PATH] [--threads 2] [--tokens 256]

The model is exported twice into a temporary folder (float32, and INT8 weights by dynamic
quantization) with ``aurl.export.onnx.export_onnx``. Three backends run through the same
``Engine``: PyTorch as ``aurl.api.load`` sets it up on this CPU, ONNX float32, ONNX INT8.

1. Speed: greedy, grammar on, from BOS, exactly ``--tokens`` new tokens per row (EOS and PAD
   forbidden, as in bench_generate.py), at each ``--batches``; the median of ``--repeats``
   runs after a warm-up, in each of ``--rounds`` rounds (the backends in turn).
2. Likelihood: NLL per token of ``--pieces`` test chorales (teacher forcing over each
   piece's first context, uncached: the prefill graph for ONNX), and the share of positions
   whose most likely next token equals float32 PyTorch's.
3. Agreement: greedy continuations (``--tokens`` new tokens) of each test piece's first 32
   tokens, all pieces in one batch; the share of new tokens equal to float32 PyTorch's.

Writes benchmarks/results/onnx.md and onnx.json (or under ``--out``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aurl.api import load
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.export.onnx import export_onnx
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.generate.onnx_backend import load_onnx
from aurl.models import load_model
from aurl.paths import SHIPPED_MODEL
from aurl.tokens import BOS, EOS, PAD
from common import machine_info, machine_markdown, median, timed, write_results

PACKAGES = ("aurl", "torch", "numpy", "onnx", "onnxruntime")
NO_BAR_LIMIT = 10**9
PROMPT = 32  # tokens of each test piece that the agreement runs continue


class NoEOS:
    """A model (PyTorch or ONNX) with EOS and PAD forbidden, so a run never stops early."""

    def __init__(self, model):
        self.inner, self.config = model, model.config

    def eval(self):
        return self

    def parameters(self):
        return self.inner.parameters()

    def new_cache(self, batch: int, max_len: int | None = None):
        return self.inner.new_cache(batch, max_len)

    def __call__(self, idx: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = self.inner(idx, **kwargs)
        logits[..., [EOS, PAD]] = float("-inf")
        return logits


def generate(model, vocab, prompts: list[torch.Tensor], tokens: int) -> torch.Tensor:
    """Greedy, grammar on: ``tokens`` new tokens (at most) after each prompt."""
    engine = Engine(model, vocab, SamplingConfig(greedy=True))
    engine.add(prompts, NO_BAR_LIMIT, tokens)
    run(engine)
    return engine.padded()


def speed(model, vocab, batch: int, tokens: int, repeats: int) -> dict:
    """ms per step and tokens/s of greedy generation from BOS, ``batch`` rows."""
    model = NoEOS(model)
    prompts = [torch.tensor([BOS])] * batch
    generate(model, vocab, prompts, min(tokens, 32))
    seconds = timed(lambda: generate(model, vocab, prompts, tokens), repeats)
    med = median(seconds)
    return {"batch": batch, "new_tokens": tokens, "seconds": seconds, "median_s": med,
            "ms_per_token": 1000 * med / tokens, "tokens_per_s": batch * tokens / med}  # fmt: skip


def test_pieces(gen, count: int) -> list[np.ndarray]:
    """The first ``count`` test pieces of the model's corpus, each cut to its context."""
    source = resolve_source(gen.folder.meta.get("data_source", "bach"), 2, False)
    test = Shard(prepare(source, gen.tokenizer, workers=2, progress=False).split("test"))
    ctx = gen.model.config.max_seq_len
    return [np.asarray(test.piece(i), np.int64)[: ctx + 1]
            for i in range(min(count, test.num_pieces))]  # fmt: skip


@torch.inference_mode()
def teacher_forced(model, pieces: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """NLL per token over ``pieces`` and, per piece, the most likely next token everywhere."""
    total, count, best = 0.0, 0, []
    for ids in pieces:
        x = torch.as_tensor(ids[None, :-1])
        logp = torch.log_softmax(model(x)[0].float(), -1)
        total -= float(logp.gather(1, torch.as_tensor(ids[1:, None])).sum())
        count += len(ids) - 1
        best.append(logp.argmax(-1).numpy())
    return total / count, best


def agreement(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Share of the reference's new tokens (after the prompt, before PAD) equal in ``out``."""
    width = max(out.shape[1], ref.shape[1])
    out, ref = (torch.nn.functional.pad(t, (0, width - t.shape[1]), value=PAD) for t in (out, ref))
    new = (ref != PAD) & (torch.arange(width) >= PROMPT)
    return float((out == ref)[new].float().mean())


def exports(model_path: Path, tmp: Path) -> dict:
    """Export float32 and INT8 under ``tmp``; each one's report and seconds."""
    out = {}
    for name, int8 in (("fp32", False), ("int8", True)):
        t0 = time.perf_counter()
        report = export_onnx(model_path, tmp / name, int8=int8)
        sizes = {Path(f).name: Path(f).stat().st_size for f in report["files"]}
        out[name] = {"seconds": time.perf_counter() - t0, "onnx_max_diff": report["onnx_max_diff"],
                     "bytes": sizes, "dir": str(tmp / name)}  # fmt: skip
    return out


def measure(args, tmp: Path) -> dict:
    """Every measurement of the three backends, exporting under ``tmp``."""
    gen = load(args.model, "cpu", threads=args.threads, backend="torch")
    vocab = gen.tokenizer.vocab
    reference = load_model(args.model).model  # float32 attention, fused kernel
    made = exports(args.model, tmp)
    models = {"pytorch": gen.model, "onnx_fp32": load_onnx(made["fp32"]["dir"]).model,
              "onnx_int8": load_onnx(made["int8"]["dir"]).model}  # fmt: skip
    pieces = test_pieces(gen, args.pieces)
    prompts = [torch.as_tensor(p[:PROMPT]) for p in pieces]
    ref_nll, ref_best = teacher_forced(reference, pieces)
    ref_out = generate(reference, vocab, prompts, args.tokens)
    results = {"pytorch_fp32_nll": ref_nll, "backends": {}}
    for name, model in models.items():
        print(f"{name} ...", flush=True)
        nll, best = teacher_forced(model, pieces)
        same = np.concatenate([a == b for a, b in zip(best, ref_best, strict=True)])
        results["backends"][name] = {
            "speed_rounds": [],
            "test_nll_per_token": nll,
            "argmax_agreement": float(same.mean()),
            "greedy_agreement": agreement(generate(model, vocab, prompts, args.tokens), ref_out),
        }
    for k in range(args.rounds):  # the backends in turn within each round: the same load
        print(f"speed, round {k + 1} of {args.rounds} ...", flush=True)
        for name, model in models.items():
            # as aurl.api.load runs them: torch keeps one thread beside onnxruntime's
            torch.set_num_threads(1 if name.startswith("onnx") else args.threads)
            results["backends"][name]["speed_rounds"].append(
                {f"batch_{b}": speed(model, vocab, b, args.tokens, args.repeats)
                 for b in args.batches})  # fmt: skip
        torch.set_num_threads(args.threads)
    attention = str(gen.model.attention_dtype or "float32").replace("torch.", "")
    cfg = gen.model.config
    results |= {"exports": made, "model_path": str(args.model), "pieces": len(pieces),
                "scored_tokens": int(sum(len(p) - 1 for p in pieces)),
                "shape": f"{cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads, "
                         f"vocab {cfg.vocab_size}, context {cfg.max_seq_len}",
                "pytorch_attention": f"{attention}, {gen.model.decode_kernel} decode kernel",
                "tokens": args.tokens, "repeats": args.repeats, "rounds": args.rounds,
                "batches": args.batches}  # fmt: skip
    return results


def _span(values: list[float], high_is_worst: bool, fmt: str) -> str:
    """``worst-best`` of the rounds' values."""
    worst, best = (max(values), min(values)) if high_is_worst else (min(values), max(values))
    return fmt.format(worst) if worst == best else f"{fmt.format(worst)}-{fmt.format(best)}"


def markdown(r: dict, info: dict) -> str:
    names = {"pytorch": "PyTorch (eager)", "onnx_fp32": "ONNX float32", "onnx_int8": "ONNX INT8"}
    lines = [
        "# ONNX backend (CPU)",
        "",
        f"Model: `{r['model_path']}` ({r['shape']}). torch and onnxruntime threads: "
        f"{info['torch_threads']} (torch keeps one beside onnxruntime's, as `aurl.api.load` "
        f"sets it, while an ONNX model runs). PyTorch attends in {r['pytorch_attention']}, as "
        "`aurl.api.load` sets it on this CPU; agreement is against float32 PyTorch. All "
        f"runs go through the same `Engine`, greedy, grammar on; speed from BOS with EOS "
        f"forbidden, exactly {r['tokens']} new tokens per row, median of {r['repeats']} runs "
        f"after a warm-up, in each of {r['rounds']} rounds (ranges worst first).",
        "",
        "| backend | "
        + " | ".join(f"batch {b} ms/token | batch {b} tokens/s" for b in r["batches"])
        + " | test NLL/token | next-token argmax = PyTorch | greedy tokens = PyTorch |",
        "|---|" + "---:|---:|" * len(r["batches"]) + "---:|---:|---:|",
    ]  # fmt: skip
    base = r["backends"]["pytorch"]["speed_rounds"]
    for key, x in r["backends"].items():
        cells = []
        for b in r["batches"]:
            ms = [s[f"batch_{b}"]["ms_per_token"] for s in x["speed_rounds"]]
            per_s = [s[f"batch_{b}"]["tokens_per_s"] for s in x["speed_rounds"]]
            cells.append(f"{_span(ms, True, '{:.2f}')} | {_span(per_s, False, '{:,.0f}')}")
        lines.append(f"| {names[key]} | " + " | ".join(cells) + f" | {x['test_nll_per_token']:.4f}"
                     f" | {x['argmax_agreement']:.1%} | {x['greedy_agreement']:.1%} |")  # fmt: skip
    lines += ["", "Speed against PyTorch in the same round (its ms/token over the backend's), "
              "worst round first:", ""]  # fmt: skip
    for key in ("onnx_fp32", "onnx_int8"):
        ratios = []
        for b in r["batches"]:
            rs = [p[f"batch_{b}"]["ms_per_token"] / s[f"batch_{b}"]["ms_per_token"]
                  for p, s in zip(base, r["backends"][key]["speed_rounds"], strict=True)]  # fmt: skip
            ratios.append(f"batch {b}: **{_span(rs, False, '{:.2f}')}×**")
        lines.append(f"- {names[key]}: " + ", ".join(ratios))
    lines += [
        "",
        f"Likelihood: {r['pieces']} test pieces, {r['scored_tokens']:,} scored tokens "
        f"(float32 PyTorch: {r['pytorch_fp32_nll']:.4f} nats/token). Greedy agreement: each "
        f"piece's first {PROMPT} tokens continued by {r['tokens']} tokens; once a row's "
        "token differs its continuation usually differs from there on.",
        "",
        "| export | seconds | prefill.onnx | step.onnx | max logit diff (sample) |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, x in r["exports"].items():
        b = x["bytes"]
        lines.append(f"| {key} | {x['seconds']:.1f} | {b['prefill.onnx'] / 2**20:.1f} MiB | "
                     f"{b['step.onnx'] / 2**20:.1f} MiB | {x['onnx_max_diff']:.2e} |")  # fmt: skip
    return "\n".join([*lines, "", machine_markdown(info)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL, help="model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256, help="new tokens per row")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=3, help="runs per speed (median)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the speed measures")
    parser.add_argument("--pieces", type=int, default=32, help="test pieces for NLL, agreement")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args, Path(tmp))
    info = machine_info(PACKAGES)
    md = markdown(results, info)
    print(md)
    kwargs = {"out_dir": args.out} if args.out else {}
    write_results("onnx", {"benchmark": "onnx", "machine": info, "results": results}, md, **kwargs)


if __name__ == "__main__":
    main()
