"""Moving through a latent space: interpolation and variation, as pure tensor functions.

Latents come in pairs, ``(z_global (B, Zg), z_bar (B, K, Zb))``; every function here works on
each of the two alike, vector by vector along the last dimension.
"""

from __future__ import annotations

import math

import torch

Latents = tuple[torch.Tensor, torch.Tensor]


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight-line interpolation: ``t`` (N,) of (...,) vectors -> (N, ..., D)."""
    t = t.view(-1, *([1] * a.dim()))
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of each pair of vectors (along the last dimension), which keeps
    a prior sample's norm as it goes (White, 2016); falls back to lerp for parallel vectors."""
    cos = (a * b).sum(-1, keepdim=True) / (
        a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)
    ).clamp(min=1e-8)
    omega = cos.clamp(-1 + 1e-7, 1 - 1e-7).acos()  # (..., 1)
    t = t.view(-1, *([1] * a.dim()))
    sin = omega.sin()
    out = ((1 - t) * omega).sin() / sin * a + (t * omega).sin() / sin * b
    straight = lerp(a, b, t.view(-1))
    return torch.where(sin.abs() < 1e-6, straight, out)


def interpolate(a: Latents, b: Latents, steps: int, method: str = "slerp") -> Latents:
    """``steps`` latents from ``a`` to ``b``, both included (each of batch size 1): (steps, ...)."""
    if steps < 2:
        raise ValueError(f"an interpolation needs at least 2 steps, got {steps}")
    how = {"slerp": slerp, "lerp": lerp}[method]
    t = torch.linspace(0, 1, steps, device=a[0].device)
    return how(a[0][0], b[0][0], t), how(a[1][0], b[1][0], t)


def vary(z: Latents, num: int, amount: float, generator: torch.Generator | None = None) -> Latents:
    """``num`` latents around ``z`` (batch size 1): ``z + amount * N(0, 1)`` noise each."""

    def near(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((num, *x.shape[1:]), generator=generator, device=x.device)
        return x + amount * noise

    return near(z[0]), near(z[1])


def follow(z: Latents, drift: float, generator: torch.Generator | None = None) -> Latents:
    """The latents of the segment after one whose latents are ``z``:
    ``sqrt(1 - drift**2) * z + drift * N(0, 1)``, which keeps prior-distributed latents
    prior-distributed (0: repeat the segment's latent, 1: independent of it)."""
    if not 0 <= drift <= 1:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    keep = math.sqrt(1 - drift**2)

    def step(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        return keep * x + drift * noise

    return step(z[0]), step(z[1])


def prior(num: int, z_global: int, bars: int, z_bar: int,
          generator: torch.Generator | None = None, device="cpu") -> Latents:  # fmt: skip
    """``num`` latents drawn from the prior N(0, 1): (num, z_global) and (num, bars, z_bar)."""
    return (torch.randn((num, z_global), generator=generator, device=device),
            torch.randn((num, bars, z_bar), generator=generator, device=device))  # fmt: skip


def join(parts: list[Latents]) -> Latents:
    """Latents of several batches as one batch, in order."""
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
