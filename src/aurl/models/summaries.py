"""Hierarchical attention: a sliding window over tokens plus one summary per finished bar.

Every layer summarises each bar by the mean of its tokens' keys and values (keys before
rotation, then rotated at the bar's first position, so a query sees how far back the bar
began). A token attends to the tokens of its window and to the summaries of every bar
before its own, so it can see the whole piece's structure at a cost that grows with bars,
not tokens. A bar's summary is complete once the next Bar token has started a new bar.

The full forward builds the summaries of a sequence at once (:func:`bar_layout`,
:func:`summary_kv`); generation keeps them in a :class:`BarMemory` beside the KV cache,
adding one token at a time, and attends over ring and summaries without concatenating them.
Both are tested to give the same logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BarLayout:
    """Which bar each token of a chunk is in (bars counted from the chunk's start)."""

    member: torch.Tensor  # (B, T, J) float: token t belongs to bar j (0 for padding)
    count: torch.Tensor  # (B, J) tokens per bar
    start: torch.Tensor  # (B, J) absolute position of each bar's first token
    visible: torch.Tensor  # (B, T, J) bool: bar j is finished before token t and not empty


def bar_layout(idx: torch.Tensor, bar_id: int, start: int = 0,
               real: torch.Tensor | None = None) -> BarLayout:  # fmt: skip
    """The bars of ``idx`` (B, T) whose first token sits at position ``start``; ``real``
    (B, T) marks the tokens that are not padding."""
    B, T = idx.shape
    bar_of = (idx == bar_id).long().cumsum(1)  # a Bar token opens the next bar
    J = int(bar_of.max()) + 1
    member = F.one_hot(bar_of, J).float()
    if real is not None:
        member = member * real[..., None]
    count = member.sum(1)
    first = torch.where(member > 0, torch.arange(T, device=idx.device)[None, :, None], T)
    starts = first.min(1).values.clamp(max=T - 1) + start  # (B, J)
    visible = (torch.arange(J, device=idx.device)[None, None] < bar_of[..., None]) & (
        count[:, None] > 0
    )
    return BarLayout(member, count, starts, visible)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE of x (..., D) by cos and sin of the same shape (or broadcastable)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def summary_kv(layout: BarLayout, k_raw: torch.Tensor, v: torch.Tensor, rope
               ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-bar mean keys (rotated at each bar's start) and values: (B, H, J, D) each, from
    unrotated keys ``k_raw`` and values ``v`` (B, H, T, D). ``rope(positions)`` gives cos and
    sin (B, J, D) for (B, J) positions."""
    weights = layout.member / layout.count.clamp(min=1)[:, None]  # (B, T, J)
    w = weights.transpose(1, 2)[:, None].to(v.dtype)  # (B, 1, J, T)
    k_mean, v_mean = w @ k_raw, w @ v  # (B, H, J, D)
    cos, sin = rope(layout.start)
    return rotate(k_mean, cos[:, None].to(k_mean.dtype), sin[:, None].to(k_mean.dtype)), v_mean


class BarMemory:
    """The summaries of every row's finished bars, and the running sums of its open bar, for
    every layer; rows follow the KV cache's row operations.

    Args:
        n_layer, batch, n_head, head_dim: shapes.
        device, dtype: where and in which type the summaries are kept.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, head_dim: int, device, dtype,
                 capacity: int = 16):  # fmt: skip
        f32 = dict(device=device, dtype=torch.float32)
        self.open_k = torch.zeros(batch, n_layer, n_head, head_dim, **f32)
        self.open_v = torch.zeros(batch, n_layer, n_head, head_dim, **f32)
        self.open_n = torch.zeros(batch, dtype=torch.long, device=device)
        self.open_start = torch.zeros(batch, dtype=torch.long, device=device)
        shape = (batch, n_layer, n_head, capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.ok = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.n = torch.zeros(batch, dtype=torch.long, device=device)  # bars finished
        self.closing: torch.Tensor | None = None  # rows whose token this step is a Bar

    # -- a chunk into an empty memory -------------------------------------------------

    def fill(self, layer: int, layout: BarLayout, k_sum, v_sum, k_raw, v, last_bar) -> None:
        """Take a prefill's summaries (B, H, J, D) of bars before each row's last bar and
        the sums of its last (open) bar, for one layer. ``last_bar`` (B,): its index."""
        J = k_sum.shape[2]
        self._grow(J)
        finished = torch.arange(J, device=k_sum.device)[None] < last_bar[:, None]  # (B, J)
        self.k[:, layer, :, :J] = k_sum.to(self.k.dtype)
        self.v[:, layer, :, :J] = v_sum.to(self.v.dtype)
        rows = torch.arange(len(last_bar), device=k_sum.device)
        weights = layout.member[rows, :, last_bar]  # (B, T)
        self.open_k[:, layer] = torch.einsum("bt,bhtd->bhd", weights, k_raw.float())
        self.open_v[:, layer] = torch.einsum("bt,bhtd->bhd", weights, v.float())
        if layer == 0:
            self.ok[:, :J] = finished & (layout.count > 0)
            self.n = last_bar.clone()
            self.open_n = layout.count[rows, last_bar].long()
            self.open_start = layout.start[rows, last_bar]

    # -- one token per row ---------------------------------------------------------------

    def begin_step(self, is_bar: torch.Tensor) -> None:
        """Before the layers of a step: which rows close their bar with this token."""
        self.closing = is_bar
        if bool(is_bar.any()):
            self._grow(int(self.n.max()) + 1)

    def step(self, layer: int, k_raw: torch.Tensor, v: torch.Tensor, rope) -> None:
        """Close the bar of the closing rows (its summary at this layer) and add this token's
        key and value (B, H, D) to the open bar."""
        if bool(self.closing.any()):
            rows = self.closing.nonzero().flatten()
            n = self.open_n[rows].clamp(min=1)[:, None, None].float()
            cos, sin = rope(self.open_start[rows, None])  # (R, 1, D)
            k = rotate(self.open_k[rows, layer] / n, cos, sin)
            self.k[rows, layer, :, self.n[rows]] = k.to(self.k.dtype)
            self.v[rows, layer, :, self.n[rows]] = (self.open_v[rows, layer] / n).to(self.v.dtype)
            self.open_k[rows, layer] = 0.0
            self.open_v[rows, layer] = 0.0
        self.open_k[:, layer] += k_raw.float()
        self.open_v[:, layer] += v.float()

    def end_step(self, positions: torch.Tensor) -> None:
        """After the layers: the closing rows have one more finished bar, opened at
        ``positions`` (B,)."""
        closing = self.closing
        rows = torch.arange(len(closing), device=closing.device)
        self.ok[rows[closing], self.n[closing]] = self.open_n[closing] > 0
        self.n = self.n + closing.long()
        self.open_n = torch.where(closing, 1, self.open_n + 1)
        self.open_start = torch.where(closing, positions, self.open_start)
        self.closing = None

    def attend(self, layer: int, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               token_mask: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """Attention of one query per row (B, H, 1, D) over the window's keys and values
        (B, H, S, D) and the finished bars' summaries: (B, H, 1, D)."""
        n = self.n + self.closing.long()  # a Bar token sees the bar it just closed
        S = int(n.max()) if len(n) else 0
        scale = q.shape[-1] ** -0.5
        scores = (q @ keys.transpose(-1, -2)) * scale  # (B, H, 1, S_tokens)
        if token_mask is not None:
            scores = scores.masked_fill(~token_mask, float("-inf"))
        if S == 0:
            return torch.softmax(scores.float(), -1).to(values.dtype) @ values
        ks, vs = self.k[:, layer, :, :S], self.v[:, layer, :, :S]
        bar_scores = (q @ ks.transpose(-1, -2).to(q.dtype)) * scale  # (B, H, 1, S)
        ok = self.ok[:, :S].clone()
        rows = self.closing.nonzero().flatten()
        ok[rows, self.n[rows]] = self.open_n[rows] > 0  # the bar closing now
        visible = ok & (torch.arange(S, device=q.device)[None] < n[:, None])
        bar_scores = bar_scores.masked_fill(~visible[:, None, None], float("-inf"))
        p = torch.softmax(torch.cat([scores, bar_scores], -1).float(), -1)
        n_tok = scores.shape[-1]
        return p[..., :n_tok].to(values.dtype) @ values + p[..., n_tok:].to(vs.dtype) @ vs

    # -- rows ------------------------------------------------------------------------

    _ROWS = ("open_k", "open_v", "open_n", "open_start", "k", "v", "ok", "n")

    def _grow(self, need: int) -> None:
        """Room for at least ``need`` summaries per row (doubling)."""
        if need > self.k.shape[3]:
            self._pad_to(max(need, 2 * self.k.shape[3]))

    def _pad_to(self, size: int) -> None:
        more = size - self.k.shape[3]
        if more > 0:
            self.k = F.pad(self.k, (0, 0, 0, more))
            self.v = F.pad(self.v, (0, 0, 0, more))
            self.ok = F.pad(self.ok, (0, more))

    def select(self, index: torch.Tensor) -> None:
        for name in self._ROWS:
            setattr(self, name, getattr(self, name)[index])

    def extend(self, other: BarMemory) -> None:
        self._match(other)
        for name in self._ROWS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))

    def put(self, rows: torch.Tensor, other: BarMemory) -> None:
        self._match(other)
        for name in self._ROWS:
            getattr(self, name)[rows] = getattr(other, name)

    def _match(self, other: BarMemory) -> None:
        size = max(self.k.shape[3], other.k.shape[3])
        self._pad_to(size)
        other._pad_to(size)
