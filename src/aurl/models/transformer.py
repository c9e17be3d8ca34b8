"""A compact pre-norm decoder-only transformer with rotary positions and an explicit KV cache.

Follows nanoGPT's model.py (pre-norm blocks, tied embeddings, GPT-2 style init) and litgpt's
KVCache (preallocated key/value buffers written in place at a given position).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class TransformerConfig(BaseModel):
    """Shape of the transformer. ``vocab_size`` comes from the tokenizer."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["decoder"] = "decoder"
    vocab_size: int = Field(545, ge=4)
    n_layer: int = Field(4, ge=1, le=64)
    n_head: int = Field(4, ge=1, le=64)
    n_embd: int = Field(256, ge=8, le=8192)
    max_seq_len: int = Field(1024, ge=8, le=65536)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    rope_base: float = Field(10000.0, gt=1.0)

    def model_post_init(self, _context) -> None:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"n_embd ({self.n_embd}) must split into n_head ({self.n_head}) heads of even size"
            )


class KVCache(nn.Module):
    """Preallocated keys and values for one attention layer: (B, H, max_len, D) each."""

    def __init__(self, batch: int, n_head: int, max_len: int, head_dim: int, device, dtype):
        super().__init__()
        shape = (batch, n_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    def update(self, start: int, k: torch.Tensor, v: torch.Tensor):
        """Write (B, H, T, D) keys/values at ``start``; return all keys/values up to the end."""
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def rope_tables(head_dim: int, max_len: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (max_len, head_dim) for rotate-half RoPE."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, D/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, D)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., T, n, D) by the (T, 1, D) tables (rotate-half form)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


# Forward passes call the functional ops on the modules' weights directly: at one token per
# step, the per-module call overhead would otherwise cost as much as the matrix products.


def _norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, None, norm.eps)


def group_means(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, T, C) over the positions of each group: ``groups`` (B, T, G) weights
    -> (B, G, C); an empty group gives zeros (pooling per bar, per phrase, per segment)."""
    return groups.transpose(1, 2) @ x / groups.sum(1)[..., None].clamp(min=1)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, cache: KVCache | None = None, start: int = 0, dtype=None,
                mask: torch.Tensor | None = None):  # fmt: skip
        """``mask`` (B, 1, 1, T) of keys to attend to makes attention bidirectional (an encoder);
        without it attention is causal."""
        B, T, C = x.shape
        qkv = F.linear(x, self.qkv.weight).view(B, T, 3, self.n_head, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], cos, sin)  # (B, T, 2, H, D): q and k rotated together
        q, k = qk.permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        v = qkv[:, :, 2].transpose(1, 2)
        if dtype is not None:  # attention in a narrower type (inference only)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if cache is not None:
            k, v = cache.update(start, k, v)
        drop = self.dropout if self.training else 0.0
        if mask is not None:  # bidirectional over the unmasked keys
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        elif T == 1:  # one new token sees everything before it
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        elif start == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:  # a chunk after a cached prefix: causal within the chunk
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return F.linear(y.transpose(1, 2).reshape(B, T, C).to(x.dtype), self.proj.weight)


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x):
        return F.linear(F.gelu(F.linear(x, self.fc.weight), approximate="tanh"), self.proj.weight)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, cache=None, start=0, dtype=None, mask=None):
        x = x + self._drop(
            self.attn.forward(_norm(self.norm1, x), cos, sin, cache, start, dtype, mask)
        )
        return x + self._drop(self.mlp.forward(_norm(self.norm2, x)))

    def _drop(self, y: torch.Tensor) -> torch.Tensor:
        return F.dropout(y, self.dropout) if self.training and self.dropout else y


class Transformer(nn.Module):
    """Decoder-only transformer over token ids."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.n_embd, bias=False)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.attention_dtype: torch.dtype | None = None  # see set_attention_dtype
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def set_attention_dtype(self, dtype: torch.dtype | None) -> None:
        """Compute attention (and keep the KV cache) in ``dtype`` when not training; None
        uses the weights' type. bfloat16 reads half the bytes of the cache, which is what
        attention over it costs; the cached and uncached paths stay the same computation."""
        self.attention_dtype = dtype

    def _attention_dtype(self) -> torch.dtype | None:
        return None if self.training else self.attention_dtype

    def new_cache(self, batch: int, max_len: int | None = None) -> list[KVCache]:
        """One KV cache per layer for ``batch`` sequences of up to ``max_len`` tokens."""
        cfg, w = self.config, self.embed.weight
        max_len = min(max_len or cfg.max_seq_len, cfg.max_seq_len)
        dtype = self._attention_dtype() or w.dtype
        return [
            KVCache(batch, cfg.n_head, max_len, cfg.n_embd // cfg.n_head, w.device, dtype)
            for _ in range(cfg.n_layer)
        ]

    def forward(
        self,
        idx: torch.Tensor,
        cache: list[KVCache] | None = None,
        start: int = 0,
        last_only: bool = False,
        prefix: torch.Tensor | None = None,
        add: torch.Tensor | None = None,
        add_every_layer: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``idx`` (B, T) placed at positions ``start..start+T-1``.

        With ``last_only`` only the last position's logits are computed: (B, 1, V). With
        ``prefix`` (B, P, C), those embeddings come first (a latent model's conditioning) and
        the tokens take the positions after them; logits are for the tokens only. With ``add``
        (B, T, C), those vectors are added to the tokens' embeddings (and, with
        ``add_every_layer``, to every block's input too): per-token conditioning. Losses are
        not the model's business: see :mod:`aurl.losses`.
        """
        x = F.embedding(idx, self.embed.weight)  # (B, T, C)
        if add is not None:
            x = x + add.to(x.dtype)
        P = 0 if prefix is None else prefix.shape[1]
        if P:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        if add is not None and add_every_layer and P:
            add = F.pad(add, (0, 0, P, 0))  # nothing is added to the prefix
        B, T = x.shape[:2]
        if start + T > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds max_seq_len {self.config.max_seq_len}"
            )
        # (T, 1, 1, D): broadcast over the q/k pair and the heads
        cos = self.rope_cos[start : start + T, None, None]
        sin = self.rope_sin[start : start + T, None, None]
        dtype = self._attention_dtype()
        if self.training and self.config.dropout:
            x = F.dropout(x, self.config.dropout)
        for i, block in enumerate(self.blocks):
            if i and add is not None and add_every_layer:
                x = x + add.to(x.dtype)
            x = block.forward(x, cos, sin, None if cache is None else cache[i], start, dtype)
        x = _norm(self.norm, x[:, -1:] if last_only else x[:, P:])
        return F.linear(x, self.embed.weight)  # (B, T, V), tied to the embedding
