"""Named loss terms. Models return outputs; recipes in :mod:`aurl.train` pick the terms."""

from aurl.losses.lm import distillation, next_token_cross_entropy, target_count

__all__ = ["distillation", "next_token_cross_entropy", "target_count"]
