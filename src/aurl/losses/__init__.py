"""Named loss terms. Models return outputs; recipes in :mod:`aurl.train` pick the terms."""

from aurl.losses.adversarial import feature_matching, hinge_discriminator, hinge_generator
from aurl.losses.lm import distillation, next_token_cross_entropy, target_count
from aurl.losses.vae import gaussian_kl, kl_free_bits

__all__ = [
    "distillation",
    "feature_matching",
    "hinge_discriminator",
    "hinge_generator",
    "gaussian_kl",
    "kl_free_bits",
    "next_token_cross_entropy",
    "target_count",
]
