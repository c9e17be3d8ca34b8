"""Musical attributes of a segment read straight from its token ids, and moving a latent
along an attribute's direction.

The attributes (``ATTRIBUTES``): ``density`` (notes per bar), ``pitch`` (mean MIDI pitch),
``polyphony`` (notes per onset) and ``activity`` (onsets per bar). An attribute vector is the
difference of the mean latents of the segments in the top and the bottom quarter of that
attribute (MusicVAE's attribute vectors), stored with a VAE when it is exported.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.generate.latents import Latents
from aurl.tokens import TokenType, Vocabulary

ATTRIBUTES = ("density", "pitch", "polyphony", "activity")


def segment_attributes(ids: np.ndarray, vocab: Vocabulary) -> dict[str, float]:
    """The attributes of one segment's ids (PAD and specials ignored)."""
    types = vocab.types[np.asarray(ids, np.int64)]
    pitches = vocab.values[np.asarray(ids, np.int64)][types == TokenType.PITCH]
    bars = max(int((types == TokenType.BAR).sum()), 1)
    onsets = int((types == TokenType.POSITION).sum())
    notes = len(pitches)
    return {
        "density": notes / bars,
        "pitch": float(pitches.mean()) if notes else 0.0,
        "polyphony": notes / max(onsets, 1),
        "activity": onsets / bars,
    }


def attribute_vectors(values: list[dict[str, float]], latents: Latents) -> dict[str, dict]:
    """Per attribute: the top-quarter minus bottom-quarter mean latents (as lists, for JSON)
    and the two quarters' mean attribute values. ``latents`` are the segments' posterior
    means, (N, Zg) and (N, K, Zb), in the order of ``values``."""
    out = {}
    for name in ATTRIBUTES:
        a = np.array([v[name] for v in values])
        low, high = np.quantile(a, 0.25), np.quantile(a, 0.75)
        lo, hi = torch.as_tensor(a <= low), torch.as_tensor(a >= high)
        if not lo.any() or not hi.any() or high <= low:
            continue  # no spread: no direction to learn
        out[name] = {
            "global": (latents[0][hi].mean(0) - latents[0][lo].mean(0)).tolist(),
            "bar": (latents[1][hi].mean(0) - latents[1][lo].mean(0)).tolist(),
            "low": float(a[a <= low].mean()),
            "high": float(a[a >= high].mean()),
        }
    return out


def move(z: Latents, vector: dict, amount: float) -> Latents:
    """``z`` moved ``amount`` times along an attribute vector (as :func:`attribute_vectors`
    stores it)."""
    g = torch.as_tensor(vector["global"], dtype=z[0].dtype, device=z[0].device)
    b = torch.as_tensor(vector["bar"], dtype=z[1].dtype, device=z[1].device)
    return z[0] + amount * g, z[1] + amount * b
