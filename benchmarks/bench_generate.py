"""Generation speed on CPU: KV cache, sampler throughput, grammar-mask cost, and a
Hugging Face ``transformers`` reference of the same shape.

    .venv/bin/python benchmarks/bench_generate.py [--model PATH] [--threads 2]

Every run starts from BOS and is made to generate exactly the asked number of tokens: the
EOS logit is set to -inf (in a thin wrapper around the model) and ``max_bars`` is huge.
Each measurement is warmed up first and is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from aurl.api import load
from aurl.generate import filters
from aurl.generate.sampler import SamplingConfig, sample
from aurl.paths import SHIPPED_MODEL
from aurl.tokens import BOS, EOS, PAD
from aurl.tokens.mask import GrammarState
from common import machine_info, machine_markdown, median, timed, write_results

PACKAGES = ("aurl", "torch", "numpy", "transformers")
NO_BAR_LIMIT = 10**9
TARGETS = {
    "kv_speedup": 10.0,
    "vs_hf": 2.0,
    "mask_share": 0.05,
    "ms_per_token": 5.0,
    "batch16_tokens_per_s": 1500.0,
}


class NoEOS(nn.Module):
    """The model with EOS (and PAD) forbidden, so that a run never stops early."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner, self.config = model, model.config

    def new_cache(self, batch: int, max_len: int | None = None):
        return self.inner.new_cache(batch, max_len)

    def forward(self, idx: torch.Tensor, **kwargs) -> torch.Tensor:
        logits = self.inner(idx, **kwargs)
        logits[..., [EOS, PAD]] = float("-inf")
        return logits


def run_sampler(model, vocab, batch: int, new_tokens: int, config: SamplingConfig, seed: int):
    """Generate ``new_tokens`` per sequence from BOS; returns the (B, 1 + new_tokens) ids."""
    prompt = torch.full((batch, 1), BOS, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    out = sample(model, vocab, prompt, NO_BAR_LIMIT, new_tokens, config, gen)
    assert out.shape == (batch, 1 + new_tokens), out.shape
    return out


def time_sampler(model, vocab, batch, new_tokens, config, repeats, seed=0) -> dict:
    """Warm up, then the median seconds of ``repeats`` runs, and per-token figures."""
    run_sampler(model, vocab, batch, min(new_tokens, 32), config, seed)
    seconds = timed(lambda: run_sampler(model, vocab, batch, new_tokens, config, seed), repeats)
    med = median(seconds)
    return {
        "batch": batch,
        "new_tokens": new_tokens,
        "seconds": seconds,
        "median_s": med,
        "ms_per_step": 1000 * med / new_tokens,
        "tokens_per_s": batch * new_tokens / med,
    }


def kv_cache_speedup(model, vocab, new_tokens: int, repeats: int) -> dict:
    """Greedy, grammar off, batch 1: the same path with and without the KV cache."""
    on = SamplingConfig(greedy=True, grammar=False, use_cache=True)
    off = SamplingConfig(greedy=True, grammar=False, use_cache=False)
    cached = time_sampler(model, vocab, 1, new_tokens, on, repeats)
    uncached = time_sampler(model, vocab, 1, new_tokens, off, repeats)
    same = run_sampler(model, vocab, 1, new_tokens, on, 0).eq(
        run_sampler(model, vocab, 1, new_tokens, off, 0)
    )
    return {
        "with_cache": cached,
        "without_cache": uncached,
        "speedup": uncached["median_s"] / cached["median_s"],
        "same_tokens_fraction": same.float().mean().item(),
    }


@torch.inference_mode()
def time_mask_calls(vocab, tokens: torch.Tensor, repeats: int) -> dict:
    """Seconds per step of ``mask()`` + ``apply_mask`` + ``update`` on recorded tokens (B, T)."""
    batch, steps = tokens.shape
    logits = torch.zeros(batch, vocab.size)

    def walk():
        state = GrammarState(vocab, batch)
        for t in range(steps):
            filters.apply_mask(logits, state.mask())
            state.update(tokens[:, t])

    walk()
    seconds = timed(walk, repeats)
    return {
        "batch": batch,
        "steps": steps,
        "seconds": seconds,
        "ms_per_step": 1000 * median(seconds) / steps,
    }


def sampler_and_mask(model, vocab, new_tokens: int, batch: int, repeats: int) -> dict:
    """Top-p 0.95 with the grammar on and off, single stream and batched; mask timed alone."""
    on = SamplingConfig(top_p=0.95, grammar=True)
    off = SamplingConfig(top_p=0.95, grammar=False)
    out = {}
    for b in (1, batch):
        runs = {
            "grammar_on": time_sampler(model, vocab, b, new_tokens, on, repeats),
            "grammar_off": time_sampler(model, vocab, b, new_tokens, off, repeats),
        }
        tokens = run_sampler(model, vocab, b, new_tokens, on, 0)[:, 1:]
        runs["mask_direct"] = time_mask_calls(vocab, tokens, repeats)
        t_on, t_off = runs["grammar_on"]["median_s"], runs["grammar_off"]["median_s"]
        runs["mask_share_on_vs_off"] = (t_on - t_off) / t_on
        runs["mask_share_direct"] = (
            runs["mask_direct"]["ms_per_step"] / runs["grammar_on"]["ms_per_step"]
        )
        out[f"batch_{b}"] = runs
    return out


def hf_model(kind: str, cfg) -> nn.Module:
    """A randomly initialised Hugging Face model with our width, depth, heads, vocab, context."""
    import transformers

    common = {
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": True,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "pad_token_id": PAD,
    }
    if kind == "llama":
        config = transformers.LlamaConfig(
            hidden_size=cfg.n_embd,
            intermediate_size=4 * cfg.n_embd,
            num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head,
            num_key_value_heads=cfg.n_head,
            max_position_embeddings=cfg.max_seq_len,
            **common,
        )
        model = transformers.LlamaForCausalLM(config)
    elif kind == "gpt2":
        config = transformers.GPT2Config(
            n_embd=cfg.n_embd,
            n_inner=4 * cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_positions=cfg.max_seq_len,
            **common,
        )
        model = transformers.GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown reference model {kind!r}")
    return model.float().eval()


@torch.inference_mode()
def hf_generate(model, batch: int, new_tokens: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    ids = torch.full((batch, 1), BOS, dtype=torch.long)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=True,
        top_p=0.95,
        top_k=0,
        temperature=1.0,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        use_cache=True,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    assert out.shape == (batch, 1 + new_tokens), out.shape
    return out


def hf_reference(kind: str, cfg, new_tokens: int, batch: int, repeats: int) -> dict:
    """Single-stream ms/token and batched tokens/s of ``generate()`` on the reference model."""
    model = hf_model(kind, cfg)
    out = {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}
    for b in (1, batch):
        hf_generate(model, b, min(new_tokens, 32))
        seconds = timed(lambda b=b: hf_generate(model, b, new_tokens), repeats)
        med = median(seconds)
        out[f"batch_{b}"] = {
            "batch": b,
            "new_tokens": new_tokens,
            "seconds": seconds,
            "median_s": med,
            "ms_per_step": 1000 * med / new_tokens,
            "tokens_per_s": b * new_tokens / med,
        }
    return out


def check(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value < target
    return "met" if ok else "NOT met"


def markdown(r: dict, info: dict) -> str:
    kv, s, b = r["kv_cache"], r["sampler"], r["batch"]
    one, many = s["batch_1"], s[f"batch_{b}"]
    lines = [
        "# Generation speed (CPU)",
        "",
        f"Model: `{r['model_path']}` ({r['parameters']:,} parameters; {r['shape']}). "
        f"torch threads: {info['torch_threads']}. Median of {r['repeats']} runs after a "
        "warm-up; every run starts from BOS with EOS forbidden, so it generates exactly "
        "the asked number of tokens.",
        "",
        f"## KV cache (batch 1, greedy, grammar off, {kv['with_cache']['new_tokens']:,} new tokens)",
        "",
        "| | median s | ms/token | tokens/s |",
        "|---|---:|---:|---:|",
    ]
    for name, key in (("with cache", "with_cache"), ("without cache", "without_cache")):
        x = kv[key]
        lines.append(
            f"| {name} | {x['median_s']:.2f} | {x['ms_per_step']:.2f} | {x['tokens_per_s']:,.0f} |"
        )
    lines += [
        "",
        f"Speedup: **{kv['speedup']:.1f}×** (target ≥ {TARGETS['kv_speedup']:.0f}×: "
        f"{check(kv['speedup'], TARGETS['kv_speedup'])}). Both runs took the same tokens "
        f"({kv['same_tokens_fraction']:.0%} identical). Without the cache every step reruns "
        f"the whole window, which grows to the {r['context']}-token context; there the "
        "sampler restarts the window from a bar near its middle (the cached run rebuilds "
        "its cache at the same points).",
        "",
        f"## Sampler (top-p 0.95, {one['grammar_on']['new_tokens']} new tokens)",
        "",
        "| run | grammar | median s | ms/step | tokens/s |",
        "|---|---|---:|---:|---:|",
    ]
    for label, runs in (("aurl, batch 1", one), (f"aurl, batch {b}", many)):
        for g in ("grammar_on", "grammar_off"):
            x = runs[g]
            lines.append(
                f"| {label} | {g.split('_')[1]} | {x['median_s']:.2f} | "
                f"{x['ms_per_step']:.2f} | {x['tokens_per_s']:,.0f} |"
            )
    for ref in r["reference"].values():
        for key in ("batch_1", f"batch_{b}"):
            x = ref[key]
            lines.append(
                f"| HF {ref['model']} generate(), batch {x['batch']} | none | "
                f"{x['median_s']:.2f} | {x['ms_per_step']:.2f} | "
                f"{x['tokens_per_s']:,.0f} |"
            )
    ms, tps = one["grammar_on"]["ms_per_step"], many["grammar_on"]["tokens_per_s"]
    lines += [
        "",
        f"- single stream: **{ms:.2f} ms/token** (target < {TARGETS['ms_per_token']:.0f}: "
        f"{check(ms, TARGETS['ms_per_token'], False)})",
        f"- batch {b}: **{tps:,.0f} tokens/s** (target > {TARGETS['batch16_tokens_per_s']:,.0f}:"
        f" {check(tps, TARGETS['batch16_tokens_per_s'])})",
    ]
    for ref in r["reference"].values():
        single = ref["batch_1"]["ms_per_step"] / ms
        batched = tps / ref[f"batch_{b}"]["tokens_per_s"]
        lines.append(
            f"- vs HF {ref['model']} ({ref['parameters']:,} parameters): single stream "
            f"**{single:.2f}×**, batch {b} **{batched:.2f}×** (target ≥ 2×: "
            f"{check(min(single, batched), TARGETS['vs_hf'])})"
        )
    lines += [
        "",
        "## Grammar mask share of step time (target < 5%)",
        "",
        "| batch | mask+apply+update, ms/step | step with grammar, ms | share (direct) | "
        "share (grammar on vs off) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for runs in (one, many):
        lines.append(
            f"| {runs['grammar_on']['batch']} | {runs['mask_direct']['ms_per_step']:.3f} | "
            f"{runs['grammar_on']['ms_per_step']:.2f} | {runs['mask_share_direct']:.1%} | "
            f"{runs['mask_share_on_vs_off']:.1%} |"
        )
    lines += [
        "",
        "Direct: `GrammarState.mask()`, `filters.apply_mask` and `GrammarState.update` timed "
        "alone over the tokens of a real run, divided by the whole step with the grammar on. "
        "On vs off: the difference of the two sampler runs (the sampler updates the state "
        "either way, so this counts only the mask and its application; it is noisy).",
        "",
        "HF reference: randomly initialised, fp32, tied embeddings, intermediate size "
        f"{4 * r['width']} (Llama's gated MLP has three such matrices, ours two; GPT-2 "
        "matches ours but has learned positions and biases), `generate(do_sample=True, "
        "top_p=0.95, top_k=0, use_cache=True, min_new_tokens=max_new_tokens)`.",
        "",
        machine_markdown(info),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL, help="model folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-tokens", type=int, default=1024, help="new tokens, KV test")
    parser.add_argument("--tokens", type=int, default=384, help="new tokens, sampler tests")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--reference",
        nargs="*",
        default=["llama", "gpt2"],
        choices=["llama", "gpt2"],
        help="HF reference models",
    )
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    generator = load(args.model, device="cpu", threads=args.threads, backend="torch")
    model, vocab, cfg = NoEOS(generator.model), generator.tokenizer.vocab, generator.model.config
    results = {
        "model_path": str(args.model),
        "parameters": generator.model.num_params(),
        "shape": f"{cfg.n_layer} layers, {cfg.n_embd} wide, {cfg.n_head} heads, "
        f"vocab {cfg.vocab_size}, context {cfg.max_seq_len}; weights float32, attention "
        f"{str(generator.model.attention_dtype or 'float32').replace('torch.', '')}, as "
        "`aurl.api.load` sets it on this CPU",
        "width": cfg.n_embd,
        "context": cfg.max_seq_len,
        "batch": args.batch,
        "repeats": args.repeats,
        "targets": TARGETS,
    }
    print("KV cache ...", flush=True)
    results["kv_cache"] = kv_cache_speedup(model, vocab, args.cache_tokens, args.repeats)
    print("sampler and grammar mask ...", flush=True)
    results["sampler"] = sampler_and_mask(model, vocab, args.tokens, args.batch, args.repeats)
    results["reference"] = {}
    for kind in args.reference:
        print(f"HF reference {kind} ...", flush=True)
        results["reference"][kind] = hf_reference(kind, cfg, args.tokens, args.batch, args.repeats)

    info = machine_info(PACKAGES)
    md = markdown(results, info)
    print(md)
    kwargs = {"out_dir": args.out} if args.out else {}
    write_results(
        "generate", {"benchmark": "generate", "machine": info, "results": results}, md, **kwargs
    )


if __name__ == "__main__":
    main()
