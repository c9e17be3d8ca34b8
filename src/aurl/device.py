"""Choosing the torch device, and how many threads to generate with."""

from __future__ import annotations

import os
import time

import torch

THREADS_ENV = "AURL_THREADS"  # torch threads for generation; default: the idle cores


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
