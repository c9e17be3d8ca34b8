"""A compact pre-norm decoder-only transformer with rotary positions and an explicit KV cache.

Follows nanoGPT's model.py (pre-norm blocks, tied embeddings, GPT-2 style init) and litgpt's
KVCache (preallocated key/value buffers written in place: :mod:`aurl.models.cache`). Attention
is full (causal) or, with ``window``, a causal sliding window of that many tokens, trained as
such and cached in a ring buffer.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from aurl.models.cache import KVCache, LayerCache
from aurl.models.summaries import BarLayout, BarMemory, bar_layout, summary_kv
from aurl.models.timeline import MusicalPositions


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
    window: int = Field(0, ge=0, le=65536)  # 0: full attention; else a sliding window
    # Musical positions (bar in phrase, step in bar) added to the token embeddings; they need
    # the Bar id and the Position ids, which training fills in from the tokenizer.
    musical_positions: bool = False
    bar_cycle: int = Field(16, ge=1, le=1024)
    bar_id: int = Field(-1, ge=-1)
    position_ids: tuple[int, int] = (0, 0)  # (first Position id, how many)
    # Hierarchical attention: the window plus one summary per finished bar (needs window).
    bar_summaries: bool = False

    def model_post_init(self, _context) -> None:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"n_embd ({self.n_embd}) must split into n_head ({self.n_head}) heads of even size"
            )
        if self.bar_summaries and not self.window:
            raise ValueError("bar_summaries needs a sliding window (window > 0)")
        if self.window > self.max_seq_len:
            raise ValueError(
                f"window ({self.window}) must not exceed max_seq_len ({self.max_seq_len})"
            )


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


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor | None, kernel: str = "sdpa") -> torch.Tensor:  # fmt: skip
    """Attention of (B, H, 1, D) queries over (B, H, S, D) keys and values, ``mask`` (B or 1,
    1, 1, S) of the keys to see (None: all), by ``kernel``."""
    if kernel == "sdpa":
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, 1, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), -1).to(v.dtype) @ v


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, cache: LayerCache | None = None, dtype=None,
                mask: torch.Tensor | None = None, bars: Bars | None = None,
                kernel: str = "sdpa"):  # fmt: skip
        """``mask`` (B or 1, 1, T, S) of the keys each query may see; without a mask or a
        cache attention is causal. ``cache``: where this call's keys go and what to attend
        over (its plan says). ``bars``: the bar summaries of hierarchical attention.
        ``kernel``: how one new token per row attends over the cache (see
        :func:`decode_attention`)."""
        B, T, C = x.shape
        qkv = F.linear(x, self.qkv.weight).view(B, T, 3, self.n_head, self.head_dim)
        qk = apply_rope(qkv[:, :, :2], cos, sin)  # (B, T, 2, H, D): q and k rotated together
        q, k = qk.permute(2, 0, 3, 1, 4)  # (B, H, T, D) each
        v = qkv[:, :, 2].transpose(1, 2)
        if dtype is not None:  # attention in a narrower type (inference only)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        drop = self.dropout if self.training else 0.0
        if bars is not None:
            k_raw = qkv[:, :, 1].transpose(1, 2).to(k.dtype)  # (B, H, T, D), not rotated
            y = _hierarchical(q, k, v, k_raw, cache, mask, bars, drop)
        else:
            causal = mask is None and T > 1
            if cache is not None:
                k, v, mask, causal = cache.attend_inputs(k, v)
            if cache is not None and T == 1 and kernel != "sdpa":
                y = decode_attention(q, k, v, mask, kernel)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop,
                                                   is_causal=causal)  # fmt: skip
        return F.linear(y.transpose(1, 2).reshape(B, T, C).to(x.dtype), self.proj.weight)


class Bars:
    """What hierarchical attention needs in one forward call: the chunk's bar layout (a full
    forward or a prefill) or the cache's bar memory (one token per row), and RoPE tables."""

    def __init__(self, rope, layout: BarLayout | None = None, memory: BarMemory | None = None,
                 last_bar: torch.Tensor | None = None):  # fmt: skip
        self.rope, self.layout, self.memory, self.last_bar = rope, layout, memory, last_bar


def _hierarchical(q, k, v, k_raw, cache: LayerCache | None, mask, bars: Bars, drop: float):
    """Attention over the window's tokens and the finished bars' summaries."""
    T = q.shape[2]
    if cache is not None and bars.layout is None:  # one token per row
        bars.memory.step(cache.layer, k_raw[:, :, 0], v[:, :, 0], bars.rope)
        keys, values, mask, _ = cache.attend_inputs(k, v)
        return bars.memory.attend(cache.layer, q, keys, values, mask)
    k_sum, v_sum = summary_kv(bars.layout, k_raw, v, bars.rope)
    keys, values, causal = k, v, mask is None
    if cache is not None:
        keys, values, mask, causal = cache.attend_inputs(k, v)
        bars.memory.fill(cache.layer, bars.layout, k_sum, v_sum, k_raw, v, bars.last_bar)
    S = keys.shape[2]
    if mask is None:  # causal (the chunk is the last T of the S keys)
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)[None, None]
    mask = torch.cat([mask.expand(q.shape[0], 1, T, S), bars.layout.visible[:, None]], -1)
    return F.scaled_dot_product_attention(q, torch.cat([keys, k_sum.to(keys.dtype)], 2),
                                          torch.cat([values, v_sum.to(values.dtype)], 2),
                                          attn_mask=mask, dropout_p=drop)  # fmt: skip


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

    def forward(self, x, cos, sin, cache=None, dtype=None, mask=None, bars=None, kernel="sdpa"):
        x = x + self._drop(
            self.attn.forward(_norm(self.norm1, x), cos, sin, cache, dtype, mask, bars, kernel)
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
        if (cfg.musical_positions or cfg.bar_summaries) and cfg.bar_id < 0:
            raise ValueError("musical_positions and bar_summaries need the tokenizer's bar_id")
        if cfg.musical_positions and cfg.position_ids[1] < 1:
            raise ValueError("musical_positions needs the tokenizer's position_ids")
        self.timeline = None
        if cfg.musical_positions:
            self.timeline = MusicalPositions(cfg.n_embd, cfg.bar_id, *cfg.position_ids,
                                             cfg.bar_cycle)  # fmt: skip
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.attention_dtype: torch.dtype | None = None  # see set_attention_dtype
        self.decode_kernel = "sdpa"  # see set_decode_kernel
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

    def set_decode_kernel(self, kernel: str) -> None:
        """How one new token per row attends over the cache when not training: ``sdpa``
        (torch's fused attention) or ``matmul`` (see :func:`decode_attention`)."""
        if kernel not in ("sdpa", "matmul"):
            raise ValueError(f"unknown decode kernel {kernel!r} (known: sdpa, matmul)")
        self.decode_kernel = kernel

    def _attention_dtype(self) -> torch.dtype | None:
        return None if self.training else self.attention_dtype

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """A KV cache for ``batch`` sequences: a ring of ``window`` slots, or up to
        ``max_len`` tokens (default and at most the context) for full attention."""
        cfg, w = self.config, self.embed.weight
        size = cfg.window or min(max_len or cfg.max_seq_len, cfg.max_seq_len)
        dtype = self._attention_dtype() or w.dtype
        head_dim = cfg.n_embd // cfg.n_head
        cache = KVCache(cfg.n_layer, batch, cfg.n_head, size, head_dim, w.device, dtype,
                        cfg.window)  # fmt: skip
        if cfg.musical_positions:  # each row's bar count and step, carried between calls
            for name in ("bars", "step"):
                cache.rows[name] = torch.zeros(batch, dtype=torch.long, device=w.device)
        if cfg.bar_summaries:
            cache.memory = BarMemory(cfg.n_layer, batch, cfg.n_head, head_dim, w.device, dtype)
        return cache

    def rope(self, positions: torch.Tensor | int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``T`` tokens from ``positions``: a shared start (-> (T, 1, 1, D))
        or (B, T) positions per row (-> (B, T, 1, 1, D)). The tables grow on demand (a
        sliding-window model has no longest sequence); they are computed the same way at
        every length, so cached and uncached positions agree exactly."""
        top = positions + T if isinstance(positions, int) else int(positions.max()) + 1
        if top > self.rope_cos.shape[0]:
            head_dim, device = self.config.n_embd // self.config.n_head, self.rope_cos.device
            with torch.inference_mode(False):  # usable by training afterwards too
                cos, sin = rope_tables(head_dim, max(top, 2 * self.rope_cos.shape[0]),
                                       self.config.rope_base)  # fmt: skip
            self.rope_cos, self.rope_sin = cos.to(device), sin.to(device)
        if isinstance(positions, int):
            cos, sin = (
                self.rope_cos[positions : positions + T],
                self.rope_sin[positions : positions + T],
            )
        else:
            cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        return cos[..., None, None, :], sin[..., None, None, :]

    def causal_mask(self, start: int, T: int) -> torch.Tensor | None:
        """The uncached mask of ``T`` tokens from ``start``: None (plain causal) unless the
        sliding window cuts it, then (1, 1, T, T) with each token seeing its last ``window``."""
        W = self.config.window
        if not W or T <= W:
            return None
        i = torch.arange(T, device=self.embed.weight.device)
        return ((i[None] <= i[:, None]) & (i[None] > i[:, None] - W))[None, None]

    def _musical(self, idx: torch.Tensor, cache: KVCache | None, lengths: torch.Tensor | None
                 ) -> torch.Tensor:  # fmt: skip
        """The musical-position embeddings of ``idx``, continuing what ``cache`` holds (and
        leaving there each row's bar count and step after its last real token)."""
        before = (None, None) if cache is None else (cache.rows["bars"], cache.rows["step"])
        bars, step = self.timeline.timeline(idx, *before)
        if cache is not None:
            last = idx.shape[1] - 1 if lengths is None else lengths - 1
            rows = torch.arange(idx.shape[0], device=idx.device)
            cache.rows["bars"], cache.rows["step"] = bars[rows, last], step[rows, last]
        return self.timeline(bars, step).to(self.embed.weight.dtype)

    def _bars(self, idx: torch.Tensor, cache: KVCache | None, start: int,
              lengths: torch.Tensor | None) -> Bars:  # fmt: skip
        """The bar summaries' context of one call: a layout of the chunk (a full forward, or
        a prefill into an empty cache) or the cache's memory (one token per row)."""
        bar_id = self.config.bar_id

        def rope(positions: torch.Tensor):
            return self.rope_cos[positions], self.rope_sin[positions]

        if cache is not None and idx.shape[1] == 1 and lengths is None and not cache.empty:
            cache.memory.begin_step(idx[:, 0] == bar_id)
            return Bars(rope, memory=cache.memory)
        if cache is not None and not cache.empty:
            raise ValueError("hierarchical attention prefills only into an empty cache")
        B, T = idx.shape
        real = None if lengths is None else torch.arange(T, device=idx.device) < lengths[:, None]
        layout = bar_layout(idx, bar_id, start if cache is None else 0, real)
        if int(layout.start.max()) >= self.rope_cos.shape[0]:
            self.rope(0, int(layout.start.max()) + 1)  # grow the tables
        last = torch.full((B,), T - 1, device=idx.device) if lengths is None else lengths - 1
        last_bar = ((idx == bar_id).long().cumsum(1)).gather(1, last[:, None])[:, 0]
        return Bars(rope, layout, None if cache is None else cache.memory, last_bar)

    def forward(
        self,
        idx: torch.Tensor,
        cache: KVCache | None = None,
        start: int = 0,
        last_only: bool = False,
        prefix: torch.Tensor | None = None,
        add: torch.Tensor | None = None,
        add_every_layer: bool = False,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) for ``idx`` (B, T).

        Without a cache the tokens sit at positions ``start..start+T-1``; with ``cache`` they
        follow what each row of the cache holds (rows may be at different positions), and
        the cache takes them in. ``lengths`` (B,) says how many of each row's tokens are real
        (right padding; with a cache only). With ``last_only`` only each row's last (real)
        token's logits are computed: (B, 1, V). With ``prefix`` (B, P, C), those embeddings
        come first (a latent model's conditioning) and the tokens take the positions after
        them; logits are for the tokens only. With ``add`` (B, T, C), those vectors are added
        to the tokens' embeddings (and, with ``add_every_layer``, to every block's input
        too): per-token conditioning. Losses are not the model's business: see
        :mod:`aurl.losses`.
        """
        x = F.embedding(idx, self.embed.weight)  # (B, T, C)
        if self.timeline is not None:
            x = x + self._musical(idx, cache, lengths)
        if add is not None:
            x = x + add.to(x.dtype)
        P = 0 if prefix is None else prefix.shape[1]
        if P:
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
        if add is not None and add_every_layer and P:
            add = F.pad(add, (0, 0, P, 0))  # nothing is added to the prefix
        B, T = x.shape[:2]
        if lengths is not None and P:
            lengths = lengths + P
        mask = None
        bars = self._bars(idx, cache, start, lengths) if self.config.bar_summaries else None
        if bars is not None and P:
            raise ValueError("hierarchical attention takes no prefix")
        if cache is not None:
            cos, sin = self.rope(cache.plan(T, lengths).positions, T)
        else:
            if not self.config.window and start + T > self.config.max_seq_len:
                raise ValueError(f"sequence of {start + T} tokens exceeds max_seq_len "
                                 f"{self.config.max_seq_len}")  # fmt: skip
            cos, sin = self.rope(start, T)
            mask = self.causal_mask(start, T)
        dtype = self._attention_dtype()
        kernel = "sdpa" if self.training else self.decode_kernel
        if self.training and self.config.dropout:
            x = F.dropout(x, self.config.dropout)
        for i, block in enumerate(self.blocks):
            if i and add is not None and add_every_layer:
                x = x + add.to(x.dtype)
            layer_cache = None if cache is None else cache[i]
            x = block.forward(x, cos, sin, layer_cache, dtype, mask, bars, kernel)
        if bars is not None and bars.memory is not None and bars.layout is None:
            bars.memory.end_step(cache.pos.clone())
        if cache is not None:
            cache.commit()
        if last_only:
            x = x[:, -1:] if lengths is None else x[torch.arange(B), lengths - 1][:, None]
        else:
            x = x[:, P:]
        return F.linear(_norm(self.norm, x), self.embed.weight)  # (B, T, V), tied
