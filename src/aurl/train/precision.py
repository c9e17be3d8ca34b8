"""Mixed precision: ``fp32``, ``bf16`` (CPU and CUDA) or ``fp16`` (CUDA, with a gradient scaler)."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Raises ValueError for a precision this device cannot train in."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"train.precision fp16 needs a CUDA device (this run is on {device.type}); use bf16"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("train.precision bf16: this GPU has no bfloat16; use fp16")


def autocast(precision: str, device: torch.device):
    """The context that runs forward passes in ``precision`` (weights stay float32)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler for fp16 (a disabled one, which does nothing, otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
