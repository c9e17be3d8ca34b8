"""Load test of ``aurl serve`` on loopback: throughput, latency and bad input.

The server runs as its own process (``python -m aurl serve``, two threads, ``--backend``:
onnxruntime by default, as ``aurl serve`` runs it) and is driven by asynchronous clients in
this one. Measured, in one run:

1. ``/health`` at ``--clients`` concurrent clients: requests per second.
2. ``/analyze`` of a 16-bar chorale: requests per second.
3. ``/generate`` of 4 bars, one piece per request, ``--clients`` concurrent clients: total
   new tokens per second against the offline sampler (``Generator.generate`` with the same
   number of pieces in one batch, in this process before the server starts), and the p50
   and p99 latency; then the same load on a server started with ``--no-batching``.
4. Fuzz: every MIDI file of the edge-case folder, and ``--mutants`` mutated uploads (cut
   short, bytes flipped, junk inserted, random bytes), through ``/analyze``, ``/generate``
   (as prompts) and ``/render``: the count of answers by status class (no 5xx allowed), and
   ``/health`` afterwards.

Writes benchmarks/results/serve.md and serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import music21

from aurl.api import load
from aurl.generate.draws import RowSampling
from aurl.generate.engine import Engine, run
from aurl.midi import midi_files
from aurl.results import TOKENS_PER_BAR_LIMIT
from common import machine_info, machine_markdown, write_results

EDGE_CASES = Path(os.environ.get("AURL_EDGE_CASES", Path(__file__).parents[2] / "shared"
                                 / "midi-edge-cases"))  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``aurl serve`` in a child process, on a free loopback port."""

    def __init__(self, *flags: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "aurl", "serve", "--port", str(self.port), "--threads", "2",
               "--max-rows", "64", "--max-bars", "16", *flags]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> ServerProcess:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start within 120 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


async def _load(url: str, clients: int, per_client: int, request) -> tuple[float, list, list]:
    """``clients`` concurrent loops of ``per_client`` requests each; (wall s, latencies s,
    responses)."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        latencies, responses = [], []

        async def loop(k: int) -> None:
            for i in range(per_client):
                t0 = time.perf_counter()
                response = await request(client, k * per_client + i)
                latencies.append(time.perf_counter() - t0)
                responses.append(response)

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        return time.perf_counter() - t0, latencies, responses


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _chorale_midi(bars: int = 16) -> str:
    score = music21.corpus.parse("bach/bwv66.6")
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"aurl-bench-{os.getpid()}.mid"
    score.measures(1, bars).write("midi", fp=str(path))
    data = path.read_bytes()
    path.unlink()
    return base64.b64encode(data).decode()


class RawConnection:
    """One keep-alive HTTP/1.1 connection, as little client work per request as can be (an
    HTTP library would cost the shared cores more than the server's own answer does)."""

    def __init__(self, port: int):
        self.port = port

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def request(self, path: str, body: bytes | None) -> int:
        method = "GET" if body is None else "POST"
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {len(body or b'')}\r\nContent-Type: application/json\r\n\r\n")  # fmt: skip
        self.writer.write(head.encode() + (body or b""))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _raw_load(port: int, clients: int, per_client: int, path: str, body: bytes | None):
    connections = [await RawConnection(port).open() for _ in range(clients)]
    latencies, statuses = [], []

    async def loop(c: RawConnection) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            statuses.append(await c.request(path, body))
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in connections))
    wall = time.perf_counter() - t0
    for c in connections:
        c.close()
    return wall, latencies, statuses


def bench_simple(url: str, clients: int, n: int, path: str, body: dict | None) -> dict:
    port = int(url.rsplit(":", 1)[1])
    data = None if body is None else json.dumps(body).encode()
    wall, lat, responses = asyncio.run(_raw_load(port, clients, n // clients, path, data))
    bad = sum(r != 200 for r in responses)
    return {"requests": len(responses), "wall_s": round(wall, 3), "failed": bad,
            "requests_per_s": round(len(responses) / wall, 1),
            "p50_ms": round(1000 * _percentile(lat, 0.5), 2),
            "p99_ms": round(1000 * _percentile(lat, 0.99), 2)}  # fmt: skip


def bench_generate(url: str, clients: int, per_client: int, bars: int) -> dict:
    async def request(client, i):
        return await client.post("/generate", json={"bars": bars, "seed": i})

    wall, lat, responses = asyncio.run(_load(url, clients, per_client, request))
    ok = [r.json() for r in responses if r.status_code == 200]
    tokens = sum(r["new_tokens"] for r in ok)
    return {"requests": len(responses), "failed": len(responses) - len(ok), "tokens": tokens,
            "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "p50_s": round(_percentile(lat, 0.5), 3),
            "p99_s": round(_percentile(lat, 0.99), 3)}  # fmt: skip


def offline(clients: int, per_client: int, bars: int, backend: str) -> dict:
    """The same requests as :func:`bench_generate` (seeds 0, 1, ...: each row draws as the
    server's would, so the work is the same tokens) through the step engine in batches of
    ``clients`` rows, one batch after the other, in this process, on the server's backend."""
    gen = load(None, threads=2, backend=backend)  # as the server
    seeds = list(range(clients * per_client))
    prompt, plan = gen.start_ids(bars, 1, None, None)  # as the server starts a request
    t0, tokens = time.perf_counter(), 0
    for at in range(0, len(seeds), clients):
        rows = seeds[at : at + clients]
        engine = Engine(gen.model, gen.tokenizer.vocab)
        engine.add([prompt[0]] * len(rows), bars, bars * TOKENS_PER_BAR_LIMIT, [plan] * len(rows),
                   [RowSampling(1.0, 0, 0.95, s) for s in rows])  # the server defaults  # fmt: skip
        run(engine)
        tokens += int((engine.length - engine.prompt_len).sum())
    wall = time.perf_counter() - t0
    return {"batch": clients, "requests": len(seeds), "bars": bars, "tokens": tokens,
            "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1)}  # fmt: skip


def mutants(files: list[Path], count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` broken variants of real MIDI files, named by how they were broken."""
    rng = random.Random(seed)
    sources = [f.read_bytes() for f in files if f.stat().st_size < 200_000]
    out = []
    for i in range(count):
        data = bytearray(rng.choice(sources))
        kind = ("cut", "flip", "junk", "random", "header")[i % 5]
        if kind == "cut":
            data = data[: rng.randrange(1, max(len(data), 2))]
        elif kind == "flip":
            for _ in range(rng.randrange(1, 20)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "junk":
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif kind == "random":
            data = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
        else:
            data = data[:14] + b"MTrk\xff\xff\xff\xff"
        out.append((kind, bytes(data)))
    return out


def fuzz(url: str, uploads: list[tuple[str, bytes]]) -> dict:
    routes = ("/analyze", "/generate", "/render")

    async def request(client, i):
        name, data = uploads[i % len(uploads)]
        text = base64.b64encode(data).decode()
        route = routes[i % len(routes)]
        body = {"prompt": text, "bars": 1} if route == "/generate" else {"midi": text}
        return await client.post(route, json=body)

    n = len(uploads) * len(routes)
    wall, _, responses = asyncio.run(_load(url, 8, -(-n // 8), request))
    classes: dict[str, int] = {}
    for r in responses:
        key = f"{r.status_code // 100}xx"
        classes[key] = classes.get(key, 0) + 1
    healthy = httpx.get(f"{url}/health", timeout=5).status_code == 200
    return {"requests": len(responses), "by_class": classes, "healthy_after": healthy,
            "wall_s": round(wall, 1)}  # fmt: skip


def measure(args, chorale: str) -> dict:
    """One round of the speed measures: the offline reference, then the two servers."""
    reference = offline(args.clients, args.rounds, args.bars, args.backend)
    with ServerProcess("--backend", args.backend) as server:
        health = bench_simple(server.url, args.clients, args.health, "/health", None)
        analyze = bench_simple(server.url, 8, args.analyze, "/analyze", {"midi": chorale})
        batched = bench_generate(server.url, args.clients, args.rounds, args.bars)
    with ServerProcess("--no-batching", "--backend", args.backend) as server:
        serial = bench_generate(server.url, args.clients, 1, args.bars)
    ref = reference["tokens_per_s"]
    out = {"health": health, "analyze": analyze, "generate_batched": batched,
           "generate_serial": serial, "offline": reference,
           "batched_vs_offline": round(batched["tokens_per_s"] / ref, 3),
           "serial_vs_offline": round(serial["tokens_per_s"] / ref, 3)}  # fmt: skip
    print({k: out[k] for k in ("batched_vs_offline", "serial_vs_offline")},
          health["requests_per_s"], analyze["requests_per_s"])  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--health", type=int, default=3200, help="/health requests")
    ap.add_argument("--analyze", type=int, default=320, help="/analyze requests")
    ap.add_argument("--rounds", type=int, default=2, help="/generate requests per client")
    ap.add_argument("--bars", type=int, default=4)
    ap.add_argument("--mutants", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the speed measures")
    ap.add_argument("--backend", choices=("auto", "torch"), default="auto",
                    help="the servers' and the offline reference's backend")  # fmt: skip
    args = ap.parse_args()
    load_start = os.getloadavg()
    chorale = _chorale_midi()
    rounds = [measure(args, chorale) for _ in range(args.repeats)]
    edge = midi_files(EDGE_CASES) if EDGE_CASES.is_dir() else []
    uploads = [(f.name, f.read_bytes()) for f in edge] + mutants(edge, args.mutants)
    fuzzed = {}
    if uploads:
        with ServerProcess() as server:
            fuzzed = fuzz(server.url, uploads)
    print("fuzz", fuzzed)
    data = {"clients": args.clients, "bars": args.bars, "backend": args.backend,
            "rounds": rounds, "fuzz": fuzzed,
            "edge_case_files": len(edge), "mutants": args.mutants if edge else 0,
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "machine": machine_info(("aurl", "torch", "fastapi", "uvicorn", "httpx"))}  # fmt: skip
    write_results("serve", data, report(data))


def _range(values: list[float], worst_first_low: bool = True, fmt: str = "{:,.0f}") -> str:
    """``worst - best`` over the rounds (low is worst unless said otherwise)."""
    lo, hi = min(values), max(values)
    a, b = (lo, hi) if worst_first_low else (hi, lo)
    return fmt.format(a) if a == b else f"{fmt.format(a)}-{fmt.format(b)}"


def report(d: dict) -> str:
    r = d["rounds"]
    col = lambda part, key: [x[part][key] for x in r]  # noqa: E731
    f = d["fuzz"]
    n = len(r)
    rows = [
        "# Serving: `aurl serve` under load (loopback)", "",
        f"The server is its own process with 2 threads and backend `{d.get('backend', 'torch')}` "
        f"(auto: onnxruntime); {d['clients']} asynchronous "
        "clients in the benchmark process share the same 2 cores. The offline reference is "
        f"the same {d['bars']}-bar requests (the same seeds, so the same tokens) through the "
        f"step engine in batches of {d['clients']}, on the same backend, in the same round. "
        f"{n} rounds, each a fresh pair of servers; ranges are worst first.", "",
        "| what | requests per round | requests/s | tokens/s | × offline | p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| /health, {d['clients']} clients | {r[0]['health']['requests']} | "
        f"{_range(col('health', 'requests_per_s'))} | | | "
        f"{_range(col('health', 'p50_ms'), False, '{:.1f}')} ms | "
        f"{_range(col('health', 'p99_ms'), False, '{:.1f}')} ms |",
        f"| /analyze (16-bar chorale), 8 clients | {r[0]['analyze']['requests']} | "
        f"{_range(col('analyze', 'requests_per_s'))} | | | "
        f"{_range(col('analyze', 'p50_ms'), False)} ms | "
        f"{_range(col('analyze', 'p99_ms'), False)} ms |",
        f"| /generate {d['bars']} bars, {d['clients']} clients, batched | "
        f"{r[0]['generate_batched']['requests']} | | "
        f"{_range(col('generate_batched', 'tokens_per_s'))} | "
        f"{_range([x['batched_vs_offline'] for x in r], True, '{:.2f}')} | "
        f"{_range(col('generate_batched', 'p50_s'), False, '{:.2f}')} s | "
        f"{_range(col('generate_batched', 'p99_s'), False, '{:.2f}')} s |",
        f"| /generate {d['bars']} bars, {d['clients']} clients, one at a time | "
        f"{r[0]['generate_serial']['requests']} | | "
        f"{_range(col('generate_serial', 'tokens_per_s'))} | "
        f"{_range([x['serial_vs_offline'] for x in r], True, '{:.2f}')} | "
        f"{_range(col('generate_serial', 'p50_s'), False, '{:.2f}')} s | "
        f"{_range(col('generate_serial', 'p99_s'), False, '{:.2f}')} s |",
        f"| offline sampler, the same requests in batches of {d['clients']} | "
        f"{r[0]['offline']['requests']} | | "
        f"{_range([x['offline']['tokens_per_s'] for x in r])} | 1.00 | | |", "",
        "Tokens per round: offline "
        f"{sorted({x['offline']['tokens'] for x in r})}, served batched "
        f"{sorted({x['generate_batched']['tokens'] for x in r})} (the same requests and seeds "
        "give the same tokens). In both, a finished row stops being computed (it leaves the "
        "engine's cache); the server gives its slot to a waiting request, but takes requests "
        "as they come, one prefill each, at positions that differ from row to row, beside "
        "the clients on the same cores. One at a time: "
        f"{sorted({x['generate_serial']['tokens'] for x in r})} tokens per round for "
        f"{r[0]['generate_serial']['requests']} requests (a request still running at the "
        "request time limit, 60 s, comes back short).", "",
        f"Failed requests over all rounds: "
        f"{sum(x[p]['failed'] for x in r for p in ('health', 'analyze', 'generate_batched', 'generate_serial'))}.", "",
        f"Fuzz: {d['edge_case_files']} edge-case files and {d['mutants']} mutated uploads (cut "
        "short, bytes flipped, junk inserted, random bytes, a broken track header), each "
        f"through /analyze, /generate (as a prompt) and /render: {f.get('requests', 0)} "
        f"requests, answers by class {f.get('by_class', {})}, healthy afterwards: "
        f"{f.get('healthy_after')}.", "",
        f"Load average (1, 5, 15 min) at the start {d['load_average_start']}, at the end "
        f"{d['load_average_end']}.", "",
        machine_markdown(d["machine"]),
    ]  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    main()
