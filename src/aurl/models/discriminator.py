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
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from aurl.models.transformer import Block, TransformerConfig, _norm, rope_tables

SCALES = ("bar", "phrase", "segment")


class DiscriminatorConfig(BaseModel):
    """Shape of the discriminator."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["discriminator"] = "discriminator"
    vocab_size: int = Field(545, ge=4)
    n_layer: int = Field(2, ge=1, le=64)
    n_head: int = Field(4, ge=1, le=64)
    n_embd: int = Field(128, ge=8, le=8192)
    max_seq_len: int = Field(1024, ge=8, le=65536)
    bars: int = Field(4, ge=1, le=64)


@dataclass
class Judgement:
    """Scores per scale ({"bar": (B, K), "phrase": (B, ceil(K/2)), "segment": (B, 1)}) and
    the segment-pooled features after every block, for feature matching."""

    scores: dict[str, torch.Tensor]
    features: list[torch.Tensor]


def _masked_means(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, T, C) over the positions of each group: ``groups`` (B, T, G) weights
    -> (B, G, C); an empty group gives zeros."""
    return groups.transpose(1, 2) @ x / groups.sum(1)[..., None].clamp(min=1)


class Discriminator(nn.Module):
    """Scores K-bar segments given as distributions over the vocabulary."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.config = cfg
        blocks = TransformerConfig(vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                                   n_head=cfg.n_head, n_embd=cfg.n_embd,
                                   max_seq_len=cfg.max_seq_len)  # fmt: skip
        self.embed = spectral_norm(nn.Linear(cfg.vocab_size, cfg.n_embd, bias=False))
        self.blocks = nn.ModuleList(Block(blocks) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd, bias=False)
        self.heads = nn.ModuleDict({s: spectral_norm(nn.Linear(cfg.n_embd, 1)) for s in SCALES})
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.max_seq_len, 10000.0)
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
            features.append(_masked_means(x, whole)[:, 0])
        x = _norm(self.norm, x)
        per_bar = F.one_hot(bars, K).float() * weight
        per_phrase = F.one_hot(bars // 2, (K + 1) // 2).float() * weight
        pooled = {
            "bar": _masked_means(x, per_bar),
            "phrase": _masked_means(x, per_phrase),
            "segment": _masked_means(x, whole),
        }
        scores = {s: self.heads[s](pooled[s]).squeeze(-1) for s in SCALES}
        return Judgement(scores, features)
