"""Long and live generation on CPU: sliding-window cost at any length, beam search, streaming
against real time, the public API against Hugging Face ``generate()``, and threads beside a
busy neighbour.

    .venv/bin/python benchmarks/bench_long.py [--rounds 3]

Every figure is measured ``--rounds`` times in this one process (each round runs every
measurement once, so the rounds interleave) and reported as the range over rounds, worst
first. Ratios are taken within a round.

- Sliding window: the shipped model's shape with a 256-token window (random weights: speed
  does not depend on them), EOS forbidden, batch 1: the median ms per step over generated
  tokens 1-256 (the window filling) and the mean of one 8,192-token run; then two runs
  stepped in turn, one over tokens 257-512 (the window full for the first time: the cost at
  256) and one over tokens 7,937-8,192, so that the ratio of their medians compares steps
  that met the same machine. The shipped full-attention model over the same 8,192 tokens
  restarts its cache every ~256 tokens; its mean ms/token is beside it.
- Beam search: the shipped model, 4 bars from BOS; tokens/s of the best beam (4 beams)
  against one sampled sequence (top-p 0.95) over the same bars.
- Streaming: ``Generator.stream`` of the shipped model, 16 bars, batch 1: time to the first
  bar, and the time per bar against the bar's duration at its tempo.
- Public API: ``aurl.api.load().generate`` of the shipped model, top-p 0.95, 12 bars (past one
  context length), batch 1 and 16, new tokens/s, with the default backend (ONNX where
  onnxruntime is installed, torch then keeping one thread) and with ``backend="torch"``;
  Hugging Face ``generate()`` (2 torch threads) on Llama- and GPT-2-shaped models of the
  same width, depth, heads and vocabulary making the same number of tokens per sequence.
  Beam search and streaming go through the default backend too.
- Threads: batch-1 and batch-16 sampling (384 tokens) with 1 and 2 torch threads, on an idle
  machine and beside one busy process (a pure-Python loop on one of the cores).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import torch

from aurl.api import load
from aurl.generate.engine import Engine, SamplingConfig
from aurl.models import Transformer
from bench_generate import NoEOS, hf_generate, hf_model, run_sampler
from common import machine_info, machine_markdown, write_results

PACKAGES = ("aurl", "torch", "numpy", "transformers")
TOP_P = SamplingConfig(top_p=0.95)


def _engine_at(model, vocab, budget: int, steps: int) -> Engine:
    """A batch-1 engine from BOS with ``budget`` new tokens, advanced ``steps`` steps."""
    engine = Engine(model, vocab, TOP_P, torch.Generator().manual_seed(0))
    engine.add([torch.tensor([1])], 10**9, budget)
    for _ in range(steps):
        engine.step()
    return engine


def step_times(model, vocab, tokens: int) -> list[float]:
    """Seconds of every step of one batch-1 run of ``tokens`` new tokens from BOS."""
    engine = _engine_at(model, vocab, tokens, 0)
    times = []
    while not bool(engine.done.all()):
        t0 = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t0)
    return times


def paired_steps(model, vocab, tokens: int, n: int = 256) -> tuple[list[float], list[float]]:
    """Seconds of the steps at tokens ``n+1..2n`` and ``tokens-n+1..tokens`` of two runs,
    taken in turn (one step of each, then the next), so that both meet the same machine."""
    early = _engine_at(model, vocab, 2 * n, n)
    late = _engine_at(model, vocab, tokens, tokens - n)
    a, b = [], []
    for _ in range(n):
        for engine, times in ((early, a), (late, b)):
            t0 = time.perf_counter()
            engine.step()
            times.append(time.perf_counter() - t0)
    return a, b


def window_round(window_model, full_model, vocab, tokens: int) -> dict:
    w = step_times(window_model, vocab, tokens)
    f = step_times(full_model, vocab, tokens)
    full, last = paired_steps(window_model, vocab, tokens)
    # medians: a shared machine's hiccups hit a few steps hard and would dominate a mean
    first = 1000 * statistics.median(w[:256])
    full, last = 1000 * statistics.median(full), 1000 * statistics.median(last)
    return {"window_first_256_ms": first, "window_full_256_ms": full,
            "window_last_256_ms": last, "ratio": last / full,
            "window_mean_ms": 1000 * sum(w) / len(w), "full_mean_ms": 1000 * sum(f) / len(f)}  # fmt: skip


def beam_round(gen) -> dict:
    out = {}
    for name, cfg in (("sampled", TOP_P), ("beam 4", SamplingConfig(beams=4))):
        t0 = time.perf_counter()
        result = gen.generate(bars=4, sampling=cfg, seed=0)
        wall = time.perf_counter() - t0
        out[name] = {"tokens": result.new_tokens, "tokens_per_s": result.new_tokens / wall}
    out["ratio"] = out["beam 4"]["tokens_per_s"] / out["sampled"]["tokens_per_s"]
    return out


def stream_round(gen, bars: int, seed: int) -> dict:
    t0, last, per_bar = time.perf_counter(), 0.0, []
    first = None
    for event in gen.stream(bars=bars, seed=seed):
        took, last = event.elapsed - last, event.elapsed
        first = event.elapsed if first is None else first
        per_bar.append((took, event.bar_seconds))
    factor = [music / max(took, 1e-9) for took, music in per_bar]
    return {"first_bar_s": first, "wall_s": time.perf_counter() - t0, "bars": len(per_bar),
            "bar_s_mean": sum(t for t, _ in per_bar) / len(per_bar),
            "bar_s_max": max(t for t, _ in per_bar),
            "music_s_per_bar": sum(m for _, m in per_bar) / len(per_bar),
            "slowest_bar_real_time_factor": min(factor)}  # fmt: skip


@contextmanager
def torch_threads(n: int):
    """Run with ``n`` torch threads, then put back the count there was."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def session_clock(model, spent: dict):
    """Add the seconds an ONNX model's graphs run to ``spent`` ("step", "prefill"); nothing
    for a PyTorch model."""
    sessions = {"step": getattr(model, "step_session", None),
                "prefill": getattr(model, "prefill_session", None)}  # fmt: skip
    sessions = {k: s for k, s in sessions.items() if s is not None}

    def clocked(name, run):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return run(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0

        return timed

    for name, s in sessions.items():
        s.run = clocked(name, s.run)
    try:
        yield
    finally:
        for s in sessions.values():
            del s.run  # the class's own method again


def api_round(gens: dict, refs: dict) -> dict:
    """Each backend's ``generate`` (with the torch threads its ``load`` chose), then the HF
    references (2 threads) making as many tokens per row as the default backend did. For the
    ONNX backend, where the time went: its step graph, its prefill graph (the restarts), and
    the rest (the sampler's own work: masks, draws, bookkeeping, decoding)."""
    out = {}
    for batch in (1, 16):
        row = {}
        for name, (gen, threads) in gens.items():
            spent: dict = {}
            with torch_threads(threads), session_clock(gen.model, spent):
                t0 = time.perf_counter()
                result = gen.generate(bars=12, num=batch, sampling=TOP_P, seed=0)
                wall = time.perf_counter() - t0
            row[f"{name}_tokens_per_s"] = result.new_tokens / wall
            if spent:
                row[f"{name}_split"] = {"step": spent.get("step", 0.0) / wall,
                                        "prefill": spent.get("prefill", 0.0) / wall}  # fmt: skip
                graphs = spent.get("step", 0.0) + spent.get("prefill", 0.0)
                row[f"{name}_graphs_tokens_per_s"] = result.new_tokens / graphs
            row.setdefault("tokens_per_row", max(1, result.new_tokens // batch))
        per_row = row["tokens_per_row"]
        for kind, model in refs.items():
            with torch_threads(2):
                t0 = time.perf_counter()
                hf_generate(model, batch, per_row)
                hf = batch * per_row / (time.perf_counter() - t0)
            row[f"{kind}_tokens_per_s"] = hf
            for name in gens:
                row[f"{name}_vs_{kind}"] = row[f"{name}_tokens_per_s"] / hf
                if f"{name}_graphs_tokens_per_s" in row:
                    row[f"{name}_graphs_vs_{kind}"] = row[f"{name}_graphs_tokens_per_s"] / hf
        out[f"batch_{batch}"] = row
    return out


def thread_round(model, vocab) -> dict:
    out = {}
    for neighbour in (False, True):
        busy = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
                if neighbour else None)  # fmt: skip
        try:
            time.sleep(0.5 if neighbour else 0)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for batch in (1, 16):
                    t0 = time.perf_counter()
                    run_sampler(model, vocab, batch, 384, TOP_P, 0)
                    key = f"{'busy' if neighbour else 'idle'}_threads{threads}_batch{batch}"
                    out[key] = batch * 384 / (time.perf_counter() - t0)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    torch.set_num_threads(2)
    return out


def profile_step(model, vocab, steps: int = 200) -> dict:
    """Where a decode step's time goes (torch profiler, self CPU time by op), batch 1 and 16,
    after 200 warm-up steps (about 200 cached tokens)."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for batch in (1, 16):
        engine = Engine(model, vocab, TOP_P, torch.Generator().manual_seed(0))
        engine.add([torch.tensor([1])] * batch, 10**9, 2 * steps + 10)
        for _ in range(steps):
            engine.step()
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                engine.step()
        wall = time.perf_counter() - t0
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ops)
        out[f"batch_{batch}"] = {
            "ms_per_step_profiled": 1000 * wall / steps,
            "top": [(e.key, e.count // steps, e.self_cpu_time_total / total) for e in ops[:8]],
        }
    return out


def step_graph_times(model, batch: int = 16, slots=(1, 128, 256, 384, 511)) -> dict:
    """The ONNX step graph alone (median of 5 x 50 calls, ms) at ``batch`` rows over each
    number of cached slots, random keys and values: what attention over the cache costs."""
    import numpy as np

    from aurl.export.onnx import step_names

    cfg = model.config
    names, head = step_names(cfg.n_layer), cfg.n_embd // cfg.n_head
    out = {}
    for n in slots:
        past = [np.random.randn(batch, cfg.n_head, n, head).astype(np.float32)
                for _ in range(2 * cfg.n_layer)]  # fmt: skip
        feed = dict(zip(names, [np.full((batch, 1), 10, np.int64), np.full((batch, 1), n),
                                np.ones((batch, 1, 1, n + 1), bool), *past], strict=True))  # fmt: skip
        for _ in range(10):
            model.step_session.run(None, feed)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(50):
                model.step_session.run(None, feed)
            times.append(1000 * (time.perf_counter() - t0) / 50)
        out[str(n)] = statistics.median(times)
    return out


def span(values: list[float], worst_high: bool = True, fmt: str = "{:.2f}") -> str:
    """The range over rounds, worst first."""
    lo, hi = min(values), max(values)
    a, b = (hi, lo) if worst_high else (lo, hi)
    return f"{fmt.format(a)}-{fmt.format(b)}" if a != b else fmt.format(a)


def render(rounds: list[dict], info: dict, tokens: int) -> str:
    get = lambda *keys: [_dig(r, keys) for r in rounds]  # noqa: E731
    lines = [
        "# Long and live generation (CPU)",
        "",
        f"{len(rounds)} rounds in one process; each figure is the range over rounds, worst "
        "first. torch threads 2 unless the row says otherwise.",
        "",
        f"## Sliding window: cost per token at any length (batch 1, {tokens:,} tokens)",
        "",
        "| | ms/token |",
        "|---|---:|",
        f"| window 256, tokens 1-256, the window filling (median step) | "
        f"{span(get('window', 'window_first_256_ms'))} |",
        f"| window 256, tokens 257-512, the window full (median step, paired) | "
        f"{span(get('window', 'window_full_256_ms'))} |",
        f"| window 256, tokens {tokens - 255:,}-{tokens:,} (median step, paired) | "
        f"{span(get('window', 'window_last_256_ms'))} |",
        f"| window 256, mean | {span(get('window', 'window_mean_ms'))} |",
        f"| full attention (context 512, restarts), mean | {span(get('window', 'full_mean_ms'))} |",
        "",
        f"Last 256 against tokens 257-512: **{span(get('window', 'ratio'))}x** (target within "
        "1.2x). *Paired*: two runs, one at tokens 257-512 and one at the last 256, step in "
        "turn, so both meet the same machine (timed one after the other, the same medians "
        "differed by up to 2.3x on this shared machine).",
        "",
        "## Beam search (shipped model, 4 bars)",
        "",
        f"- sampled (top-p 0.95): {span(get('beam', 'sampled', 'tokens_per_s'), False, '{:.0f}')}"
        " tokens/s",
        f"- best of 4 beams: {span(get('beam', 'beam 4', 'tokens_per_s'), False, '{:.0f}')} "
        "tokens/s of the kept sequence",
        f"- ratio: {span(get('beam', 'ratio'), False)}",
        "",
        "## Streaming (shipped model, 16 bars, batch 1, a new seed each round)",
        "",
        f"- time to the first bar: {span(get('stream', 'first_bar_s'))} s",
        f"- time per bar: mean {span(get('stream', 'bar_s_mean'))} s, slowest "
        f"{span(get('stream', 'bar_s_max'))} s, for "
        f"{span(get('stream', 'music_s_per_bar'), False)} s of music per bar",
        f"- slowest bar against real time: **{span(get('stream', 'slowest_bar_real_time_factor'), False, '{:.1f}')}x**"
        " faster than it plays",
        "",
        "## Public API against Hugging Face generate() (12 bars, top-p 0.95)",
        "",
        "| batch | backend | aurl tokens/s | HF Llama tokens/s | HF GPT-2 tokens/s | vs Llama "
        "| vs GPT-2 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for b in (1, 16):
        k = f"batch_{b}"
        for name in ("default", "torch"):
            lines.append(
                f"| {b} | {name} | "
                f"{span(get('api', k, f'{name}_tokens_per_s'), False, '{:.0f}')} | "
                f"{span(get('api', k, 'llama_tokens_per_s'), False, '{:.0f}')} | "
                f"{span(get('api', k, 'gpt2_tokens_per_s'), False, '{:.0f}')} | "
                f"{span(get('api', k, f'{name}_vs_llama'), False)}x | "
                f"{span(get('api', k, f'{name}_vs_gpt2'), False)}x |"
            )
    lines += [
        "",
        f"*default*: `load()` as it comes ({rounds[0]['api_backend']}); *torch*: "
        '`load(backend="torch")`. HF models: randomly initialised, fp32, tied embeddings, '
        "sampling with top-p 0.95 and the KV cache, 2 torch threads, made to produce as many "
        "tokens per sequence as the default backend did in that round.",
        "",
    ]
    if "default_split" in rounds[0]["api"]["batch_16"]:
        lines += _split_lines(get)
    if "step_graph_ms" in rounds[0]:
        lines += _step_graph_lines(rounds[0]["step_graph_ms"])
    lines += [
        "## Threads beside a busy neighbour (tokens/s, 384 tokens, top-p 0.95)",
        "",
        "| machine | threads | batch 1 | batch 16 |",
        "|---|---:|---:|---:|",
    ]
    for state in ("idle", "busy"):
        for t in (1, 2):
            lines.append(
                f"| {state} | {t} | "
                f"{span(get('threads', f'{state}_threads{t}_batch1'), False, '{:.0f}')} | "
                f"{span(get('threads', f'{state}_threads{t}_batch16'), False, '{:.0f}')} |"
            )
    if "profile" in rounds[0]:
        lines += ["", "## Where a decode step's time goes (torch profiler, self CPU time)", ""]
        for key, p in rounds[0]["profile"].items():
            ops = ", ".join(f"{name} x{n} {share:.0%}" for name, n, share in p["top"])
            lines.append(f"- {key.replace('_', ' ')} ({p['ms_per_step_profiled']:.2f} ms/step "
                         f"under the profiler): {ops}")  # fmt: skip
    lines += ["", machine_markdown(info)]
    return "\n".join(lines)


def _split_lines(get) -> list[str]:
    """Where the default (ONNX) backend's time went, and the bound the graphs alone set."""
    lines = [
        "Where the default backend's time went (share of the wall time): the step graph, the "
        "prefill graph (each row's restarts, every ~256 tokens, rebuild its cache from the "
        "last ~256 tokens: about one prefilled token per generated token), and the rest (the "
        "sampler's own work: grammar and control masks, draws, bookkeeping, decoding). *Graphs "
        "alone*: the tokens/s if the rest took no time at all.",
        "",
        "| batch | step graph | prefill graph | the rest | graphs alone, tokens/s | vs Llama "
        "| vs GPT-2 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in (1, 16):
        k = f"batch_{b}"
        step, prefill = get("api", k, "default_split", "step"), get("api", k, "default_split",
                                                                     "prefill")  # fmt: skip
        rest = [1 - a - c for a, c in zip(step, prefill, strict=True)]
        pct = lambda v: span([100 * x for x in v], False, "{:.0f}") + "%"  # noqa: E731
        lines.append(
            f"| {b} | {pct(step)} | {pct(prefill)} | {pct(rest)} | "
            f"{span(get('api', k, 'default_graphs_tokens_per_s'), False, '{:.0f}')} | "
            f"{span(get('api', k, 'default_graphs_vs_llama'), False)}x | "
            f"{span(get('api', k, 'default_graphs_vs_gpt2'), False)}x |"
        )
    return [*lines, ""]


def _step_graph_lines(times: dict) -> list[str]:
    """The step graph's time against the slots it attends over (first round)."""
    cells = " | ".join(f"{ms:.2f}" for ms in times.values())
    return [
        "The step graph alone at batch 16 (ms a call, first round) against the number of "
        "cached slots it attends over: the cost that grows with the context.",
        "",
        "| slots | " + " | ".join(times) + " |",
        "|---|" + "---:|" * len(times),
        f"| ms | {cells} |",
        "",
    ]


def _dig(d: dict, keys: tuple):
    for k in keys:
        d = d[k]
    return d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=8192)
    args = parser.parse_args()
    gen = load(device="cpu", threads=2)  # the default backend: ONNX where it is installed
    default_threads = torch.get_num_threads()
    torch_gen = load(device="cpu", threads=2, backend="torch")
    gens = {"default": (gen, default_threads), "torch": (torch_gen, 2)}
    cfg, vocab = torch_gen.model.config, torch_gen.tokenizer.vocab
    torch.manual_seed(0)
    window = Transformer(cfg.model_copy(update={"window": 256})).eval()
    window.set_attention_dtype(torch_gen.model.attention_dtype)
    long_cfg = cfg.model_copy(update={"max_seq_len": 4096})  # GPT-2's learned positions
    refs = {kind: hf_model(kind, long_cfg) for kind in ("llama", "gpt2")}
    rounds = []
    for k in range(args.rounds):
        print(f"round {k + 1} ...", flush=True)
        win = window_round(NoEOS(window), NoEOS(torch_gen.model), vocab, args.tokens)
        with torch_threads(default_threads):
            beam, stream = beam_round(gen), stream_round(gen, 16, seed=k)
        rounds.append({
            "window": win, "beam": beam, "stream": stream, "api": api_round(gens, refs),
            "threads": thread_round(NoEOS(torch_gen.model), vocab),
            "api_backend": type(gen.model).__name__,
        })  # fmt: skip
    rounds[0]["profile"] = profile_step(NoEOS(torch_gen.model), vocab)
    if hasattr(gen.model, "step_session"):
        with torch_threads(default_threads):
            rounds[0]["step_graph_ms"] = step_graph_times(gen.model)
    info = machine_info(PACKAGES)
    md = render(rounds, info, args.tokens)
    print(md)
    write_results("long", {"benchmark": "long", "machine": info, "rounds": rounds}, md)


if __name__ == "__main__":
    main()
