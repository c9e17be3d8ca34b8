"""The VAE recipe: reconstruction cross-entropy plus the KL of both latent levels, with free
bits, a beta schedule and token dropout on the decoder's input. Its evaluation is
:func:`aurl.evaluate.latent.segment_metrics` over fixed held-out segments."""

from __future__ import annotations

import torch

from aurl.data.shards import Shard
from aurl.data.windows import fixed_segments
from aurl.generate.attributes import attribute_vectors, segment_attributes
from aurl.losses import kl_free_bits, next_token_cross_entropy, target_count
from aurl.models.vae import VAE
from aurl.tokens import PAD, Vocabulary
from aurl.train.schedule import beta_at
from aurl.train.task import TokenTask


def drop_tokens(ids: torch.Tensor, rate: float, generator: torch.Generator | None = None
                ) -> torch.Tensor:  # fmt: skip
    """``ids`` with a share ``rate`` of its tokens after the first replaced by PAD."""
    if rate <= 0:
        return ids
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    drop = (u < rate) & (ids != PAD)
    drop[:, 0] = False
    return ids.masked_fill(drop, PAD)


class VAETask(TokenTask):
    """Trains a :class:`~aurl.models.vae.VAE` on K-bar segments (inputs, targets).

    Args:
        model: the VAE.
        cfg: the train section (``cfg.vae`` holds beta, free bits and token dropout).
        device: where batches go.
        evaluate: validation metrics of the (unwrapped) model.
        export: saves the model with the given meta.
    """

    def losses(self, phase, batch, step):
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        return self.terms(x, y)[0]

    def terms(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The VAE's named terms for segments ``x`` and targets ``y``, and the logits."""
        v = self.cfg.vae
        out = self.train_model(x, decoder_ids=drop_tokens(x, v.token_dropout))
        post, per_token = out.posterior, 1.0 / max(float(target_count(y, PAD)), 1.0)
        # KL per segment, spread over the batch's tokens so it weighs as the ELBO says
        segments = x.shape[0]
        terms = {
            "rec": next_token_cross_entropy(out.logits, y, PAD),
            "kl_global": kl_free_bits(post.mu_global, post.logvar_global, v.free_bits)
            * segments
            * per_token,
            "kl_bar": kl_free_bits(post.mu_bar, post.logvar_bar, v.free_bits)
            * segments
            * per_token,
        }
        return terms, out.logits

    def loss_weights(self, step):
        v = self.cfg.vae
        beta = beta_at(step, v.beta_schedule, v.beta, v.beta_warmup, v.beta_cycle)
        return {"kl_global": beta, "kl_bar": beta}


@torch.no_grad()
def latent_attributes(model: VAE, shard: Shard, vocab: Vocabulary, seq_len: int, bars: int,
                      device: torch.device, count: int = 512) -> dict[str, dict]:  # fmt: skip
    """Attribute vectors (see :mod:`aurl.generate.attributes`) from ``count`` segments of a
    split, for ``aurl vary --attribute``."""
    model.eval()
    segments = fixed_segments(shard, vocab, seq_len, bars, count)
    values, means_g, means_b = [], [], []
    for i in range(0, len(segments), 32):
        x = torch.stack([s[0] for s in segments[i : i + 32]]).to(device)
        zg, zb = model.encode(x).mean()
        means_g.append(zg.cpu())
        means_b.append(zb.cpu())
        values += [segment_attributes(row[row != PAD], vocab) for row in x.cpu().numpy()]
    return attribute_vectors(values, (torch.cat(means_g), torch.cat(means_b)))
