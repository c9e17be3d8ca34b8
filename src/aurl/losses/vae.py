"""Loss terms of latent models: the KL divergence of a diagonal Gaussian posterior from the
standard normal prior, with free bits."""

from __future__ import annotations

import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, in nats: same shape as ``mu``."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def kl_free_bits(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """The KL of a batch of posteriors (B, ..., D), averaged over the batch and summed over the
    dimensions, each dimension's batch mean floored at ``free_bits`` nats (Kingma et al., 2016):
    below the floor a dimension costs a constant, so the optimiser has no reason to close it."""
    per_dim = gaussian_kl(mu.float(), logvar.float()).mean(0)  # (..., D)
    return per_dim.clamp(min=free_bits).sum()
