"""A discriminator of K-bar segments at three scales (bar, phrase of two bars, segment), for
the VAE-GAN.

It reads distributions over the vocabulary at every position, (B, T, V): one-hot rows for
real segments, the decoder's softmax for generated ones, so gradients reach the generator
through the expected embeddings. Bidirectional blocks (the decoder's, without the causal
mask) read the embedded sequence; masked means per bar, per phrase and over the segment feed
one score head each. The input projection and the heads are spectrally normalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from aurl.models.transformer import Block, TransformerConfig, _norm, group_means, rope_tables

SCALES = ("bar", "phrase", "segment")


class DiscriminatorConfig(TransformerConfig):
    """Shape of the discriminator: the blocks' fields (see :class:`TransformerConfig`), smaller
    by default, and the bars of a segment."""

    arch: Literal["discriminator"] = "discriminator"
    n_layer: int = Field(2, ge=1, le=64)
    n_embd: int = Field(128, ge=8, le=8192)
    bars: int = Field(4, ge=1, le=64)


@dataclass
class Judgement:
    """Scores per scale ({"bar": (B, K), "phrase": (B, ceil(K/2)), "segment": (B, 1)}) and
    the segment-pooled features after every block, for feature matching."""

    scores: dict[str, torch.Tensor]
    features: list[torch.Tensor]


class Discriminator(nn.Module):
    """Scores K-bar segments given as distributions over the vocabulary."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.config = cfg
        self.embed = spectral_norm(nn.Linear(cfg.vocab_size, cfg.n_embd, bias=False))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd, bias=False)
        self.heads = nn.ModuleDict({s: spectral_norm(nn.Linear(cfg.n_embd, 1)) for s in SCALES})
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, probs: torch.Tensor, keep: torch.Tensor, bars: torch.Tensor) -> Judgement:
        """Judge ``probs`` (B, T, V) where ``keep`` (B, T) marks real positions and ``bars``
        (B, T) gives each position's bar (0..K-1)."""
        T, K = probs.shape[1], self.config.bars
        cos, sin = self.rope_cos[:T, None, None], self.rope_sin[:T, None, None]
        x = self.embed(probs)  # (B, T, C): expected embeddings
        mask, weight = keep[:, None, None, :], keep[..., None].float()
        whole = weight  # (B, T, 1): one group, the segment
        features = []
        for block in self.blocks:
            x = block.forward(x, cos, sin, mask=mask)
            features.append(group_means(x, whole)[:, 0])
        x = _norm(self.norm, x)
        per_bar = F.one_hot(bars, K).float() * weight
        per_phrase = F.one_hot(bars // 2, (K + 1) // 2).float() * weight
        pooled = {
            "bar": group_means(x, per_bar),
            "phrase": group_means(x, per_phrase),
            "segment": group_means(x, whole),
        }
        scores = {s: self.heads[s](pooled[s]).squeeze(-1) for s in SCALES}
        return Judgement(scores, features)
