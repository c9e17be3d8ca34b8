"""Choosing the torch device, and the attention precision that is fast on it."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time

import torch

from aurl.fileio import atomic_write_json
from aurl.paths import cache_dir

THREADS_ENV = "AURL_THREADS"  # torch threads for generation; default: the idle cores
DTYPE_ENV = "AURL_ATTENTION_DTYPE"  # float32, bfloat16 or auto (the default: measured)
CALIBRATION = "calibration.json"
CACHED_KEYS = 256  # the cache length the calibration attends over


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU.

    Raises:
        ValueError: a device was asked for that this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available")
    return torch.device(name)


def generation_threads(sample_s: float = 0.1) -> int:
    """Torch threads for generating: ``$AURL_THREADS`` if set, else the cores that are idle.

    With a thread on every core, a busy neighbour process makes torch's threads wait on each
    other at every operation and throughput falls many times over; with one thread per idle
    core it degrades with the cores taken (``benchmarks/results/long.md``). The idle cores are
    read from ``/proc/stat`` over ``sample_s`` seconds (Linux; elsewhere all cores count as
    idle).

    Raises:
        ValueError: ``$AURL_THREADS`` is not a positive whole number.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if env := os.environ.get(THREADS_ENV):
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"${THREADS_ENV}={env!r}: give a number of threads, 1 or more")
        return int(env)
    busy = _busy_cores(sample_s)
    return max(1, min(cores or 1, round((cores or 1) - busy)))


def _busy_cores(seconds: float) -> float:
    """How many cores other processes kept busy over ``seconds`` (0 where unknown)."""

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle

    first = read()
    if first is None:
        return 0.0
    time.sleep(seconds)
    second = read()
    total, idle = second[0] - first[0], second[1] - first[1]
    return 0.0 if total <= 0 else (os.cpu_count() or 1) * (1 - idle / total)


def fast_attention_dtype(device: torch.device, config=None) -> torch.dtype | None:
    """bfloat16 or None (float32) for attention and the KV cache when generating.

    ``config``: the model's (its heads and width give the shape timed; default 4 x 64).
    bfloat16 halves the bytes of the cache that attention reads, but whether that is faster
    depends on the CPU's kernels, not on its instruction flags: on one 2-core machine with
    AVX-512 BF16 it was 3x faster over a long cache, on another it was several times slower.
    So on CPUs with bfloat16 instructions both are timed for a decode step of this head shape
    (batch 1 and 16 over 256 cached keys) and the faster kept; the choice is remembered per
    CPU, torch version, thread count and shape in the cache folder. ``$AURL_ATTENTION_DTYPE``
    (``float32`` or ``bfloat16``) overrides it. Off the CPU: float32.
    """
    forced = os.environ.get(DTYPE_ENV, "auto").lower()
    if forced in ("float32", "fp32"):
        return None
    if forced in ("bfloat16", "bf16"):
        return torch.bfloat16
    if forced != "auto":
        raise ValueError(f"${DTYPE_ENV}={forced!r}: use float32, bfloat16 or auto")
    if device.type != "cpu" or not _bf16_instructions():
        return None
    n_head = getattr(config, "n_head", 4)
    head_dim = getattr(config, "n_embd", 4 * 64) // n_head
    key = f"{_cpu_name()}|torch {torch.__version__}|threads {torch.get_num_threads()}|" \
          f"{n_head}x{head_dim}"  # fmt: skip
    known = _read_calibration()
    if key not in known:
        known[key] = attention_speed_ratio(n_head, head_dim)
        _write_calibration(known)
    return torch.bfloat16 if known[key] < 0.9 else None


def attention_speed_ratio(n_head: int, head_dim: int, repeats: int = 15) -> float:
    """Seconds of a bfloat16 decode-step attention over float32's (geometric mean of batch
    1 and 16, medians of ``repeats`` interleaved calls)."""
    ratios = []
    for batch in (1, 16):
        times: dict[torch.dtype, list[float]] = {torch.float32: [], torch.bfloat16: []}
        inputs = {dt: [torch.randn(batch, n_head, n, head_dim).to(dt) for n in (1, CACHED_KEYS,
                                                                              CACHED_KEYS)]
                  for dt in times}  # fmt: skip
        for i in range(repeats + 3):
            for dt, (q, k, v) in inputs.items():
                t0 = time.perf_counter()
                torch.nn.functional.scaled_dot_product_attention(q, k, v)
                if i >= 3:  # warm-up calls are not counted
                    times[dt].append(time.perf_counter() - t0)
        fp32, bf16 = (statistics.median(times[dt]) for dt in (torch.float32, torch.bfloat16))
        ratios.append(bf16 / fp32)
    return round(float((ratios[0] * ratios[1]) ** 0.5), 3)


def _bf16_instructions() -> bool:
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _calibration_path():
    return cache_dir() / CALIBRATION


def _read_calibration() -> dict:
    try:
        return json.loads(_calibration_path().read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measure again


def _write_calibration(known: dict) -> None:
    with contextlib.suppress(OSError):  # a read-only cache folder: measure again next time
        atomic_write_json(_calibration_path(), known)
