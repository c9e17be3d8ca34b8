"""A variational autoencoder over K-bar segments: a bidirectional encoder, hierarchical latents
(one for the segment, one per bar) and the autoregressive decoder conditioned on them.

The encoder is the decoder's blocks without the causal mask, reading the segment's tokens;
the posterior of the global latent pools every token, that of bar ``k``'s latent pools the
tokens of bar ``k``. The decoder is :class:`~aurl.models.transformer.Transformer`; the latents
always reach it as ``1 + K`` prefix embeddings before the tokens, so every layer can attend to
them and cached decoding works unchanged (the prefix is the first thing in the cache). With
``condition: tokens`` a projection of bar ``k``'s vector (zero at initialisation, so training
starts from the prefix model) is also added to the embedding of every token of bar ``k``
(``layers``: to every block's input as well).

With ``slots`` S > 1, each bar latent is S parts of ``z_bar / S`` numbers, one per stretch of
``slot_steps`` grid steps of the bar (a beat, by default): the encoder pools each part from
the tokens of its stretch, and the per-token vector of a token is its own stretch's, so a
latent describes a few notes instead of a whole bar's. The prefix still holds one vector per
bar (all of its parts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from aurl.models.cache import KVCache
from aurl.models.timeline import timeline
from aurl.models.transformer import (
    Block,
    Transformer,
    TransformerConfig,
    _norm,
    group_means,
)


class VAEConfig(TransformerConfig):
    """Shape of the VAE: the decoder's fields (see :class:`TransformerConfig`) plus the
    encoder and the latents.

    Attributes:
        bars: K, the bars of a segment (one latent each, plus one for the segment).
        enc_layers: bidirectional blocks of the encoder.
        z_global, z_bar: sizes of the segment latent and of each bar latent.
        bar_id: the token id of ``Bar`` (segments are split into bars by it).
        condition: how the latents reach the decoder: ``prefix`` embeddings only, or also
            added to every token of their bar (``tokens``) or to every layer (``layers``).
        slots, slot_steps: parts of each bar latent, each for ``slot_steps`` grid steps of
            the bar (1: the whole bar); more than one needs per-token conditioning and the
            tokenizer's ``position_ids``.
    """

    arch: Literal["vae"] = "vae"
    bars: int = Field(4, ge=1, le=64)
    enc_layers: int = Field(2, ge=1, le=64)
    z_global: int = Field(32, ge=1, le=4096)
    z_bar: int = Field(16, ge=1, le=4096)
    condition: Literal["prefix", "tokens", "layers"] = "prefix"
    slots: int = Field(1, ge=1, le=64)
    slot_steps: int = Field(12, ge=1, le=4096)

    def model_post_init(self, context) -> None:
        super().model_post_init(context)
        if self.z_bar % self.slots:
            raise ValueError(f"z_bar ({self.z_bar}) must split into slots ({self.slots}) parts")
        if self.slots > 1 and self.condition == "prefix":
            raise ValueError("slots > 1 needs condition: tokens or layers")

    @property
    def parts(self) -> int:
        """Per-token latent vectors of a segment: bars times slots."""
        return self.bars * self.slots

    def decoder(self) -> TransformerConfig:
        """The decoder's own config (the fields the two share)."""
        shared = set(TransformerConfig.model_fields) - {"arch"}
        return TransformerConfig(**self.model_dump(include=shared))


@dataclass
class Posterior:
    """Means and log-variances of the latents: global (B, Zg), per bar (B, K, Zb)."""

    mu_global: torch.Tensor
    logvar_global: torch.Tensor
    mu_bar: torch.Tensor
    logvar_bar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A draw of (global, per-bar) latents by the reparameterisation trick."""

        def draw(mu, logvar):
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            return mu + noise * (0.5 * logvar).exp()

        return draw(self.mu_global, self.logvar_global), draw(self.mu_bar, self.logvar_bar)

    def mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu_global, self.mu_bar


@dataclass
class VAEOutput:
    """What :meth:`VAE.forward` gives: the decoder's logits and the posterior they used."""

    logits: torch.Tensor  # (B, T, V)
    posterior: Posterior
    z_global: torch.Tensor  # (B, Zg), the latents the decoder read
    z_bar: torch.Tensor  # (B, K, Zb)


def bar_index(ids: torch.Tensor, bar_id: int, bars: int, before: torch.Tensor | None = None
              ) -> torch.Tensor:  # fmt: skip
    """Which bar (0..bars-1) each token of ``ids`` (B, T) is in: tokens before the first Bar
    belong to bar 0, and bars past the last count as the last. ``before`` (B,) counts the Bar
    tokens of each row that came before ``ids`` (a cached continuation)."""
    count = (ids == bar_id).long().cumsum(-1)
    if before is not None:
        count = count + before[:, None]
    return (count - 1).clamp(0, bars - 1)


def part_index(ids: torch.Tensor, cfg: VAEConfig, bars_before: torch.Tensor | None = None,
               step_before: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Which latent part (bar * slots + slot) each token of ``ids`` (B, T) reads: the bar as
    :func:`bar_index` counts it and the stretch of ``slot_steps`` grid steps its last Position
    falls in (0 before any; the last slot takes the rest of a long bar). ``bars_before`` and
    ``step_before`` (B,) carry a cached continuation's timeline."""
    if cfg.slots == 1:
        return bar_index(ids, cfg.bar_id, cfg.bars, bars_before)
    if cfg.position_ids[1] == 0:
        raise ValueError("slots > 1 needs the tokenizer's position_ids in the model config")
    return _parts(*timeline(ids, cfg.bar_id, *cfg.position_ids, bars_before, step_before), cfg)


def _parts(bars: torch.Tensor, step: torch.Tensor, cfg: VAEConfig) -> torch.Tensor:
    """:func:`part_index` from a timeline's bar counts and step indices (B, T)."""
    slot = ((step - 1).clamp(min=0) // cfg.slot_steps).clamp(max=cfg.slots - 1)
    return (bars - 1).clamp(0, cfg.bars - 1) * cfg.slots + slot


class VAE(nn.Module):
    """Encoder, posterior heads, latent-to-prefix projections and the decoder."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        enc = cfg.decoder().model_copy(update={"n_layer": cfg.enc_layers})
        self.enc_embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.enc_blocks = nn.ModuleList(Block(enc) for _ in range(cfg.enc_layers))
        self.enc_norm = nn.LayerNorm(cfg.n_embd, bias=False)
        self.to_global = nn.Linear(cfg.n_embd, 2 * cfg.z_global)
        part = cfg.z_bar // cfg.slots
        self.to_bar = nn.Linear(2 * cfg.n_embd, 2 * part)  # part pool + segment pool
        self.from_global = nn.Linear(cfg.z_global, cfg.n_embd)
        self.from_bar = nn.Linear(cfg.z_bar + cfg.z_global, cfg.n_embd)
        self.decoder = Transformer(cfg.decoder())
        made = [self.to_global, self.to_bar, self.from_global, self.from_bar]
        if cfg.slots > 1:  # each part's own vector for the tokens of its stretch
            self.from_part = nn.Linear(part + cfg.z_global, cfg.n_embd)
            made.append(self.from_part)
        for m in (self.enc_embed, *made):
            nn.init.normal_(m.weight, std=0.02)
        for m in made:
            nn.init.zeros_(m.bias)
        if cfg.condition != "prefix":  # per-token conditioning starts at zero: it is learnt
            self.to_tokens = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
            nn.init.zeros_(self.to_tokens.weight)

    @torch.no_grad()
    def start_from(self, lm: Transformer) -> None:
        """Take a trained language model's weights: all of them as the decoder's, its
        embedding and first ``enc_layers`` blocks as the encoder's (read both ways).

        Raises:
            ValueError: ``lm`` has another shape than the decoder.
        """
        try:
            self.decoder.load_state_dict(lm.state_dict())
        except RuntimeError as e:
            raise ValueError(f"the language model does not fit the VAE's decoder: {e}") from None
        if len(lm.blocks) < len(self.enc_blocks):
            raise ValueError(f"the language model has {len(lm.blocks)} blocks, the encoder "
                             f"{len(self.enc_blocks)}")  # fmt: skip
        self.enc_embed.weight.copy_(lm.embed.weight)
        for mine, theirs in zip(self.enc_blocks, lm.blocks, strict=False):
            mine.load_state_dict(theirs.state_dict())

    @property
    def prefix_len(self) -> int:
        return 1 + self.config.bars

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_attention_dtype(self, dtype: torch.dtype | None) -> None:
        """See :meth:`Transformer.set_attention_dtype` (the decoder's attention)."""
        self.decoder.set_attention_dtype(dtype)

    def set_decode_kernel(self, kernel: str) -> None:
        """See :meth:`Transformer.set_decode_kernel` (the decoder's attention)."""
        self.decoder.set_decode_kernel(kernel)

    def encode(self, ids: torch.Tensor, pad_id: int = 0) -> Posterior:
        """The posterior of a batch of segments ``ids`` (B, T); PAD tokens are ignored."""
        cfg, T = self.config, ids.shape[1]
        keep = ids != pad_id  # (B, T)
        cos = self.decoder.rope_cos[:T, None, None]
        sin = self.decoder.rope_sin[:T, None, None]
        mask = keep[:, None, None, :]  # (B, 1, 1, T): keys to attend to
        x = F.embedding(ids, self.enc_embed.weight)
        for block in self.enc_blocks:
            x = block.forward(x, cos, sin, mask=mask)
        x = _norm(self.enc_norm, x) * keep[..., None]  # (B, T, C), zero at PAD
        count = keep.sum(1, keepdim=True).clamp(min=1)
        pooled = x.sum(1) / count  # (B, C)
        which = F.one_hot(part_index(ids, cfg), cfg.parts).float()
        which = which * keep[..., None]  # (B, T, K * S)
        per_part = group_means(x, which)  # (B, K * S, C)
        g = self.to_global(pooled)
        b = self.to_bar(torch.cat([per_part, pooled[:, None].expand_as(per_part)], -1))
        mu_g, logvar_g = g.chunk(2, -1)
        mu_b, logvar_b = (t.reshape(len(ids), cfg.bars, cfg.z_bar) for t in b.chunk(2, -1))
        return Posterior(mu_g, logvar_g.clamp(-10, 10), mu_b, logvar_b.clamp(-10, 10))

    def conditioning(self, z_global: torch.Tensor, z_bar: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """What the decoder reads of the latents: the prefix (B, 1 + K, C) and, unless
        ``condition`` is ``prefix``, the per-part vectors added to the tokens (B, K * S, C)."""
        cfg = self.config
        g = self.from_global(z_global)[:, None]  # (B, 1, C)
        both = torch.cat([z_bar, z_global[:, None].expand(-1, z_bar.shape[1], -1)], -1)
        prefix = torch.cat([g, self.from_bar(both)], 1)
        if cfg.condition == "prefix":
            return prefix, None
        if cfg.slots == 1:
            return prefix, self.to_tokens(prefix[:, 1:])
        parts = z_bar.reshape(len(z_bar), cfg.parts, cfg.z_bar // cfg.slots)
        glob = z_global[:, None].expand(-1, cfg.parts, -1)
        return prefix, self.to_tokens(self.from_part(torch.cat([parts, glob], -1)))

    def decode(self, ids: torch.Tensor, z_global: torch.Tensor, z_bar: torch.Tensor,
               cache: KVCache | None = None, last_only: bool = False,
               bar_of: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Decoder logits for ``ids`` under latents: see :meth:`decode_with`."""
        cond = self.conditioning(z_global, z_bar)
        return self.decode_with(ids, cond, cache, last_only, bar_of)

    def decode_with(self, ids: torch.Tensor, cond: tuple[torch.Tensor, torch.Tensor | None],
                    cache: KVCache | None = None, last_only: bool = False,
                    bar_of: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Decoder logits for ``ids`` given :meth:`conditioning`'s ``cond``. Without a cache,
        or into an empty one, the prefix comes first; a cached continuation follows it (the
        prefix's length is :attr:`prefix_len`). ``bar_of`` (B, T) is the latent part of every
        token (:func:`part_index`; default: counted from ``ids``, which suits a whole
        segment), read unless ``condition`` is ``prefix``."""
        cfg, (prefix, per_bar) = self.config, cond
        add = None
        if per_bar is not None:
            bar_of = part_index(ids, cfg) if bar_of is None else bar_of
            add = per_bar.gather(1, bar_of[..., None].expand(-1, -1, per_bar.shape[-1]))
        first = cache is None or cache.empty
        return self.decoder(ids, cache=cache, last_only=last_only,
                            prefix=prefix if first else None, add=add,
                            add_every_layer=cfg.condition == "layers")  # fmt: skip

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        return self.decoder.new_cache(batch, max_len)

    def forward(self, ids: torch.Tensor, decoder_ids: torch.Tensor | None = None,
                sample: bool = True, pad_id: int = 0) -> VAEOutput:  # fmt: skip
        """Encode the segments ``ids`` (B, T), draw latents (or take the posterior mean), and
        decode ``decoder_ids`` (default: ``ids``; token dropout passes a corrupted copy)."""
        post = self.encode(ids, pad_id)
        z_global, z_bar = post.sample() if sample else post.mean()
        bar_of = part_index(ids, self.config)  # of the uncorrupted input
        logits = self.decode(ids if decoder_ids is None else decoder_ids, z_global, z_bar,
                             bar_of=bar_of)  # fmt: skip
        return VAEOutput(logits, post, z_global, z_bar)


class LatentDecoder(nn.Module):
    """The VAE's decoder with its latents fixed, shaped like a
    :class:`~aurl.models.transformer.Transformer` for the sampler: token positions start at 0
    (the latents' prefix sits before them), ``config.max_seq_len`` counts tokens only.

    Args:
        vae: the model.
        z_global, z_bar: one latent per sequence of the batch: (B, Zg) and (B, K, Zb).
    """

    def __init__(self, vae: VAE, z_global: torch.Tensor, z_bar: torch.Tensor):
        super().__init__()
        self.vae, self.z_global, self.z_bar = vae, z_global, z_bar
        cfg = vae.decoder.config
        self.config = cfg.model_copy(update={"max_seq_len": cfg.max_seq_len - vae.prefix_len})
        self.cond: tuple[torch.Tensor, torch.Tensor | None] | None = None  # made once

    def _conditioning(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cond is None:
            self.cond = self.vae.conditioning(self.z_global, self.z_bar)
        return self.cond

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """A cache that also carries each row's Bar count and per-bar vectors, so that its
        row operations (a sampler dropping finished rows) keep them with the row's keys."""
        cache = self.vae.new_cache(
            batch, (max_len or self.config.max_seq_len) + self.vae.prefix_len
        )
        device = self.z_global.device
        cache.rows["bars_seen"] = torch.zeros(batch, dtype=torch.long, device=device)
        cache.rows["step"] = torch.zeros(batch, dtype=torch.long, device=device)
        per_bar = self._conditioning()[1]
        if per_bar is not None:
            cache.rows["per_bar"] = per_bar.new_zeros(batch, *per_bar.shape[1:])
        return cache

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None, last_only: bool = False
                ) -> torch.Tensor:  # fmt: skip
        """Logits for ``idx``: the whole segment so far without a cache (one row per latent);
        with one, the tokens after what it holds (the prefix goes in with the first call, for
        every latent; later calls take the rows the cache holds)."""
        cfg = self.vae.config
        prefix, per_bar = self._conditioning()
        if cache is None:
            return self.vae.decode_with(idx, (prefix, per_bar), None, last_only,
                                        part_index(idx, cfg))  # fmt: skip
        if cache.empty and per_bar is not None:
            cache.rows["per_bar"] = per_bar
        before = (None, None) if cache.empty else (cache.rows["bars_seen"], cache.rows["step"])
        # the timeline once: the parts these tokens read, and what the next call carries on
        bars, step = timeline(idx, cfg.bar_id, *cfg.position_ids, *before)
        bar_of = _parts(bars, step, cfg)
        cache.rows["bars_seen"], cache.rows["step"] = bars[:, -1], step[:, -1]
        cond = (prefix, cache.rows.get("per_bar"))
        return self.vae.decode_with(idx, cond, cache, last_only, bar_of)
