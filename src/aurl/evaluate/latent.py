"""Measures of latent models (VAEs) on held-out K-bar segments: the negative ELBO, the
reconstruction with teacher forcing, and the latent diagnostics (KL per dimension, active
units, how much the decoder depends on the latents)."""

from __future__ import annotations

import numpy as np
import torch

from aurl.losses import gaussian_kl, next_token_cross_entropy, target_count
from aurl.models.vae import VAE
from aurl.tokens import PAD

ACTIVE = 0.01  # a latent dimension is active when its posterior mean varies more than this


@torch.no_grad()
def segment_metrics(model: VAE, segments: list[tuple[torch.Tensor, torch.Tensor]],
                    device: torch.device, batch: int = 16) -> dict[str, float]:  # fmt: skip
    """Reconstruction and latent diagnostics over held-out segments, from posterior means.

    ``val_loss`` is the negative ELBO per token (reconstruction + both KLs at beta 1);
    ``rec_shuffled_gap`` is how much the reconstruction loss grows when each segment is
    decoded with another segment's latents (near 0: the decoder ignores them).
    """
    model.eval()
    rec = gap = kl_g = kl_b = correct = tokens = 0.0
    mus_g, mus_b, kl_dims = [], [], []
    for i in range(0, len(segments), batch):
        x = torch.stack([s[0] for s in segments[i : i + batch]]).to(device)
        y = torch.stack([s[1] for s in segments[i : i + batch]]).to(device)
        post = model.encode(x)
        zg, zb = post.mean()
        logits = model.decode(x, zg, zb)
        n = float(target_count(y, PAD))
        rec += float(next_token_cross_entropy(logits, y, PAD)) * n
        keep = y != PAD
        correct += float(((logits.argmax(-1) == y) & keep).sum())
        if len(x) > 1:
            other = model.decode(x, zg.roll(1, 0), zb.roll(1, 0))
            gap += float(next_token_cross_entropy(other, y, PAD)) * n
        kg, kb = (
            gaussian_kl(post.mu_global, post.logvar_global),
            gaussian_kl(post.mu_bar, post.logvar_bar),
        )
        kl_g, kl_b, tokens = kl_g + float(kg.sum()), kl_b + float(kb.sum()), tokens + n
        mus_g.append(zg.cpu())
        mus_b.append(zb.flatten(0, 1).cpu())
        kl_dims.append(torch.cat([kg, kb.flatten(1)], 1).cpu())
    active_g = float((torch.cat(mus_g).var(0) > ACTIVE).float().mean())
    active_b = float((torch.cat(mus_b).var(0) > ACTIVE).float().mean())
    per_dim = torch.cat(kl_dims).mean(0)
    return {
        "val_loss": round((rec + kl_g + kl_b) / tokens, 5),
        "val_rec": round(rec / tokens, 5),
        "val_token_accuracy": round(correct / tokens, 4),
        "val_kl_global": round(kl_g / len(segments), 4),
        "val_kl_bar": round(kl_b / len(segments), 4),
        "kl_per_dim_max": round(float(per_dim.max()), 4),
        "kl_per_dim_min": round(float(per_dim.min()), 4),
        "active_global": round(active_g, 3),
        "active_bar": round(active_b, 3),
        "rec_shuffled_gap": round((gap - rec) / tokens, 5) if gap else float(np.nan),
    }
