"""Adversarial terms (hinge loss, Lim & Ye 2017; Miyato et al. 2018) and feature matching
(Salimans et al., 2016), over a discriminator's scores at several scales."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_discriminator(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor]
                        ) -> torch.Tensor:  # fmt: skip
    """The discriminator's hinge loss, averaged over scales: real scores pushed above 1,
    fake ones below -1."""
    terms = [F.relu(1 - real[s]).mean() + F.relu(1 + fake[s]).mean() for s in real]
    return torch.stack(terms).mean()


def hinge_generator(fake: dict[str, torch.Tensor]) -> torch.Tensor:
    """The generator's adversarial loss: minus the fake scores, averaged over scales."""
    return torch.stack([-fake[s].mean() for s in fake]).mean()


def feature_matching(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean absolute difference of the batch-mean features of real and generated segments,
    layer by layer (the real side is a fixed target)."""
    terms = [(r.detach().mean(0) - f.mean(0)).abs().mean() for r, f in zip(real, fake, strict=True)]
    return torch.stack(terms).mean()
