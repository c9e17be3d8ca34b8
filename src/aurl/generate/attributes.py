"""Musical attributes of a segment read straight from its token ids, and moving a latent
along an attribute's direction.

The attributes (``ATTRIBUTES``): ``density`` (notes per bar), ``pitch`` (mean MIDI pitch),
``polyphony`` (notes per onset) and ``activity`` (onsets per bar). An attribute vector is the
difference of the mean latents of the segments in the top and the bottom quarter of that
attribute (MusicVAE's attribute vectors), stored with a VAE when it is exported.

Pitch is tied to none of the others, yet in the chorales it goes with them (over 512
training segments it correlates 0.55 with density and 0.51 with polyphony), so its quarter
difference moved polyphony more than pitch (each in its standard deviations). Its
vector (``HELD``) is instead the latents' least-squares slope on pitch with the other three
held fixed (a regression of the latents on all four, standardized), scaled to the same
quarter difference; for the shipped VAE that took the other attributes' movement from 2.24
to 0.07 times pitch's. Density, polyphony and activity keep their quarter differences: density
is polyphony times activity, so no direction changes one of them with the other two held.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.generate.latents import Latents
from aurl.tokens import TokenType, Vocabulary

ATTRIBUTES = ("density", "pitch", "polyphony", "activity")
HELD = {"pitch": ("density", "polyphony", "activity")}  # held fixed along the vector


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
    table = {name: np.array([v[name] for v in values], float) for name in ATTRIBUTES}
    for name in ATTRIBUTES:
        a = table[name]
        low, high = np.quantile(a, 0.25), np.quantile(a, 0.75)
        lo, hi = torch.as_tensor(a <= low), torch.as_tensor(a >= high)
        if not lo.any() or not hi.any() or high <= low:
            continue  # no spread: no direction to learn
        if name in HELD:
            span = a[a >= high].mean() - a[a <= low].mean()
            vector = held_direction(table, name, HELD[name], latents, span)
        else:
            vector = (latents[0][hi].mean(0) - latents[0][lo].mean(0),
                      latents[1][hi].mean(0) - latents[1][lo].mean(0))  # fmt: skip
        out[name] = {"global": vector[0].tolist(), "bar": vector[1].tolist(),
                     "low": float(a[a <= low].mean()), "high": float(a[a >= high].mean())}  # fmt: skip
    return out


def held_direction(table: dict[str, np.ndarray], name: str, held: tuple[str, ...],
                   latents: Latents, span: float) -> Latents:  # fmt: skip
    """The change of the latents over ``span`` of attribute ``name`` with the ``held``
    attributes fixed: the least-squares coefficients of the latents on the attributes
    (standardized; held ones without spread left out) and a constant."""
    columns = [table[name], *(table[h] for h in held if np.std(table[h]) > 0)]
    x = np.stack([(c - c.mean()) / c.std() for c in columns] + [np.ones(len(columns[0]))], 1)
    g, b = latents[0].double(), latents[1].double()
    z = torch.cat([g, b.flatten(1)], 1).numpy()
    coef = np.linalg.lstsq(x, z, rcond=None)[0][0] * span / table[name].std()
    coef = torch.as_tensor(coef, dtype=latents[0].dtype)
    return coef[: g.shape[1]], coef[g.shape[1] :].view(b.shape[1:])


def move(z: Latents, vector: dict, amount: float) -> Latents:
    """``z`` moved ``amount`` times along an attribute vector (as :func:`attribute_vectors`
    stores it)."""
    g = torch.as_tensor(vector["global"], dtype=z[0].dtype, device=z[0].device)
    b = torch.as_tensor(vector["bar"], dtype=z[1].dtype, device=z[1].device)
    return z[0] + amount * g, z[1] + amount * b
