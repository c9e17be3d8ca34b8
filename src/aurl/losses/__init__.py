"""Named loss terms. Models return outputs; recipes in :mod:`aurl.train` pick the terms."""

from aurl.losses.lm import distillation, next_token_cross_entropy, target_count
from aurl.losses.vae import gaussian_kl, kl_free_bits

__all__ = [
    "distillation",
    "gaussian_kl",
    "kl_free_bits",
    "next_token_cross_entropy",
    "target_count",
]
