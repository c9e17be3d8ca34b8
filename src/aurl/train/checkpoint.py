"""Training checkpoints: everything needed to resume exactly, in one atomically written file."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from aurl.fileio import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    """The state of every random generator the loop touches."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to memory, then an atomic write: a kill never leaves half a file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)
