"""How a model attends fastest when generating on this machine: measured, then remembered.

Whether bfloat16 attention beats float32, and whether torch's fused attention beats two
plain matrix products for the single query of a decode step, depends on the CPU's kernels,
not on its instruction flags; so both are timed once per CPU, torch version, thread count
and head shape, and the result is kept in the cache folder (``calibration.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from aurl.fileio import atomic_write_json
from aurl.models.transformer import decode_attention
from aurl.paths import cache_dir

DTYPE_ENV = "AURL_ATTENTION_DTYPE"  # float32, bfloat16 or auto (the default: measured)
CALIBRATION = "calibration.json"
CACHED_KEYS = 256  # the cache length the calibration attends over


@dataclass(frozen=True)
class AttentionChoice:
    """How a model attends when generating: in which type (None: float32) and with which
    kernel one new token attends over the cache (``sdpa``: torch's fused attention,
    ``matmul``: two matrix products and a softmax)."""

    dtype: torch.dtype | None = None
    kernel: str = "sdpa"


DTYPES = {"float32": None, "bfloat16": torch.bfloat16}
KERNELS = ("sdpa", "matmul")


def fast_attention(device: torch.device, config=None) -> AttentionChoice:
    """The fastest attention type and decode kernel for a model on this machine.

    ``config``: the model's (its heads and width give the shape timed; default 4 x 64).
    bfloat16 halves the bytes of the cache that attention reads, but whether that is faster
    depends on the CPU's kernels, not on its instruction flags: on one 2-core machine with
    AVX-512 BF16 it was 3x faster over a long cache, on another 2.5x slower. And torch's fused
    attention, made for many queries, can lose to two plain matrix products for the single
    query of a decode step. So on the CPU every candidate (float32, and bfloat16 where the CPU
    has bfloat16 instructions; each kernel) is timed for a decode step of this head shape
    (batch 1 and 16 over 256 cached keys) and the fastest kept; the choice is remembered per
    CPU, torch version, thread count and shape in the cache folder (about 0.5 s the first
    time). ``$AURL_ATTENTION_DTYPE`` (``float32`` or ``bfloat16``) fixes the type. Off the
    CPU: float32 and the fused kernel.

    Raises:
        ValueError: a bad ``$AURL_ATTENTION_DTYPE``.
    """
    forced = os.environ.get(DTYPE_ENV, "auto").lower().replace("fp32", "float32")
    forced = forced.replace("bf16", "bfloat16")
    if forced not in ("auto", *DTYPES):
        raise ValueError(f"${DTYPE_ENV}={forced!r}: use float32, bfloat16 or auto")
    if device.type != "cpu":
        return AttentionChoice(DTYPES.get(forced))
    names = [forced] if forced != "auto" else ["float32"] + ["bfloat16"] * _bf16_instructions()
    n_head = getattr(config, "n_head", 4)
    head_dim = getattr(config, "n_embd", 4 * 64) // n_head
    key = (f"{_cpu_name()}|torch {torch.__version__}|threads {torch.get_num_threads()}|"
           f"{n_head}x{head_dim}|{'+'.join(names)}")  # fmt: skip
    known = _read_calibration()
    if not isinstance(known.get(key), dict):
        known[key] = attention_timings(n_head, head_dim, names)
        _write_calibration(known)
    best = min(known[key], key=known[key].get)
    name, kernel = best.split("/")
    return AttentionChoice(DTYPES[name], kernel)


def use_fastest_attention(model, device: torch.device) -> AttentionChoice:
    """Set ``model`` (a transformer or a VAE) to attend as :func:`fast_attention` finds
    fastest for it on ``device`` when generating; returns the choice."""
    choice = fast_attention(device, model.config)
    model.set_attention_dtype(choice.dtype)
    model.set_decode_kernel(choice.kernel)
    return choice


def attention_timings(n_head: int, head_dim: int, dtypes: list[str], repeats: int = 15
                      ) -> dict[str, float]:  # fmt: skip
    """Microseconds of a decode step's attention for every ``dtype/kernel``: the geometric
    mean of batch 1 and 16 over :data:`CACHED_KEYS` keys, medians of ``repeats`` interleaved
    calls after three warm-ups."""
    combos = [(d, k) for d in dtypes for k in KERNELS]
    score = dict.fromkeys(combos, 1.0)
    for batch in (1, 16):
        shapes = [(batch, n_head, n, head_dim) for n in (1, CACHED_KEYS, CACHED_KEYS)]
        inputs = {d: [torch.randn(s).to(DTYPES[d] or torch.float32) for s in shapes]
                  for d in dtypes}  # fmt: skip
        times: dict[tuple[str, str], list[float]] = {c: [] for c in combos}
        for i in range(repeats + 3):
            for d, k in combos:
                t0 = time.perf_counter()
                decode_attention(*inputs[d], None, k)
                if i >= 3:
                    times[(d, k)].append(time.perf_counter() - t0)
        for c in combos:
            score[c] *= statistics.median(times[c]) * 1e6
    return {f"{d}/{k}": round(score[(d, k)] ** 0.5, 1) for d, k in combos}


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
