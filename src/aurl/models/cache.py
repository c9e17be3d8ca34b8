"""The KV cache: keys and values of every layer, each sequence of the batch at its own position.

A token at absolute position ``p`` goes to slot ``p % size``. Without a window the cache holds
one context (``size`` = the model's context, positions stay below it); with a sliding window of
``W`` tokens it is a ring buffer of ``W`` slots and positions grow without bound: generation of
any length at a constant cost per token. Keys are stored already rotated (RoPE at their absolute
positions); attention scores depend only on the distance of query and key, so nothing is
re-rotated when the ring wraps.

Rows are independent: each has its own position (``pos``, the tokens it has seen), so sequences
with different prompts share one batch, and rows can be added, dropped, reordered (beam search)
or replaced (a restart) between steps. While every row is at the same position the cache takes
the plain path (a slice write, no mask), which is what a batch with one shared prompt uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Plan:
    """Where one forward call's tokens go: decided once, used by every layer."""

    positions: torch.Tensor | int  # (B, T) absolute positions, or the shared start
    mask: torch.Tensor | None  # (B, 1, T, S) keys each query may see, or None
    causal: bool  # without a mask: causal attention inside the chunk
    write: tuple | None  # slot write of the plain path: (start, end); else None
    scatter: tuple | None  # (rows, slots, token index) of the general path's writes
    concat: bool  # the chunk's keys are attended beside the cache's, then written
    advance: torch.Tensor | int  # tokens each row takes in


class KVCache:
    """Preallocated keys and values for all layers: (n_layer, B, H, size, D) each.

    Args:
        n_layer, batch, n_head, head_dim: the model's shape and the number of sequences.
        size: slots per row (the context, or the window).
        window: 0 for full attention, else the sliding window (equal to ``size``).
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, size: int, head_dim: int,
                 device, dtype, window: int = 0):  # fmt: skip
        shape = (n_layer, batch, n_head, size, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.size, self.window = size, window
        self.pos = torch.zeros(batch, dtype=torch.long, device=device)  # tokens seen per row
        self.slot_pos = torch.full((batch, size), -1, dtype=torch.long, device=device)
        self.common: int | None = 0  # the position every row is at, None when they differ
        self.filled = 0  # slots that may be in use in some row (an upper bound)
        self._plan: Plan | None = None
        self.rows: dict[str, torch.Tensor] = {}  # a model's own per-row state, batch first
        self.memory = None  # bar summaries (hierarchical attention), rows kept in step

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def empty(self) -> bool:
        return self.common == 0

    def __getitem__(self, layer: int) -> LayerCache:
        return LayerCache(self, layer)

    # -- one forward call ---------------------------------------------------------------

    def plan(self, T: int, lengths: torch.Tensor | None = None) -> Plan:
        """Place ``T`` new tokens per row (only the first ``lengths[b]`` of row b are real:
        right padding). Returns the plan every layer follows; :meth:`commit` applies it."""
        if lengths is None and self.common is not None:
            start = self.common
            if start + T <= self.size:  # the plain path: a slice of slots, no mask
                mask = None
                if T > 1 and start > 0:  # a chunk after a cached prefix
                    mask = torch.ones(T, start + T, dtype=torch.bool, device=self.k.device)
                    mask = mask.tril(start)[None, None]
                self._plan = Plan(start, mask, T > 1 and start == 0, (start, start + T),
                                  None, False, T)  # fmt: skip
                return self._plan
        device = self.k.device
        steps = torch.arange(T, device=device)
        positions = self.pos[:, None] + steps  # (B, T)
        real = torch.ones_like(positions, dtype=torch.bool)
        if lengths is not None:
            real = steps[None] < lengths[:, None]
        if T == 1 and lengths is None:  # one token per row: write, then attend
            self._plan = self._step_plan(positions)
            return self._plan
        last = self.pos + (T if lengths is None else lengths) - 1  # (B,) last real position
        keep = real & (positions > (last - self.size)[:, None])  # the last `size` tokens
        rows, t = keep.nonzero(as_tuple=True)
        slots = positions[rows, t] % self.size
        key_pos = torch.cat([self.slot_pos, positions.masked_fill(~real, -1)], 1)  # (B, S+T)
        q = positions[:, :, None]
        mask = (key_pos[:, None] >= 0) & (key_pos[:, None] <= q)
        if self.window:
            mask &= key_pos[:, None] > q - self.window
        advance = T if lengths is None else lengths
        self._plan = Plan(positions, mask[:, None], False, None, (rows, slots, t), True, advance)
        return self._plan

    def _step_plan(self, positions: torch.Tensor) -> Plan:
        """One token per row at its own position: slot ``p % size``."""
        slots = positions[:, 0] % self.size
        rows = torch.arange(self.batch, device=positions.device)
        n = min(self.size, self.filled + 1)
        mask = None
        if self.common is None:  # rows differ: mask what each row has not written
            seen = self.slot_pos[:, :n].clone()
            seen[rows[slots < n], slots[slots < n]] = positions[slots < n, 0]
            mask = seen >= 0
            if self.window:
                mask &= seen > positions - self.window
            mask = mask[:, None, None]  # (B, 1, 1, n)
        zero = torch.zeros_like(slots)
        return Plan(positions, mask, False, None, (rows, slots, zero), False, 1)

    def commit(self) -> None:
        """Advance every row past the tokens of the last :meth:`plan`."""
        plan, self._plan = self._plan, None
        if plan.write is not None:
            start, end = plan.write
            self.slot_pos[:, start:end] = torch.arange(start, end, device=self.k.device)
        else:
            rows, slots, t = plan.scatter
            self.slot_pos[rows, slots] = plan.positions[rows, t]
        self.pos += plan.advance
        if self.common is not None and isinstance(plan.advance, int):
            self.common += plan.advance
            self.filled = min(self.size, max(self.filled, self.common))
        else:
            self._resync()

    def _resync(self) -> None:
        """Recompute the shared position and the slots in use after rows changed."""
        if self.batch == 0:
            self.common, self.filled = 0, 0
            return
        top = int(self.pos.max())
        self.common = top if bool((self.pos == top).all()) else None
        self.filled = min(self.size, top)

    # -- rows -----------------------------------------------------------------------------

    def select(self, index: torch.Tensor) -> None:
        """Keep (or repeat, or reorder) rows: row i becomes old row ``index[i]``."""
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.pos, self.slot_pos = self.pos[index], self.slot_pos[index]
        self.rows = {name: t[index] for name, t in self.rows.items()}
        if self.memory is not None:
            self.memory.select(index)
        self._resync()

    def unwind(self, rows: torch.Tensor) -> None:
        """Rows ``rows`` forget the last token they took: its slot is freed (the next token
        takes it) and their position goes back by one.

        Raises:
            ValueError: with bar summaries (their running sums cannot be taken back).
        """
        if self.memory is not None:
            raise ValueError("a cache with bar summaries cannot forget a token")
        if not len(rows):
            return
        self.pos[rows] -= 1
        self.slot_pos[rows, self.pos[rows] % self.size] = -1
        self._resync()

    def extend(self, other: KVCache) -> None:
        """Append the rows of ``other`` (a cache of the same model)."""
        self.k = torch.cat([self.k, other.k], 1)
        self.v = torch.cat([self.v, other.v], 1)
        self.pos = torch.cat([self.pos, other.pos])
        self.slot_pos = torch.cat([self.slot_pos, other.slot_pos])
        self.rows = {name: torch.cat([t, other.rows[name]]) for name, t in self.rows.items()}
        if self.memory is not None:
            self.memory.extend(other.memory)
        self._resync()

    def put(self, rows: torch.Tensor, other: KVCache) -> None:
        """Replace rows ``rows`` with the rows of ``other`` (a cache of the same model)."""
        self.k[:, rows], self.v[:, rows] = other.k, other.v
        self.pos[rows], self.slot_pos[rows] = other.pos, other.slot_pos
        for name, t in self.rows.items():
            t[rows] = other.rows[name]
        if self.memory is not None:
            self.memory.put(rows, other.memory)
        self._resync()


class LayerCache:
    """One layer's view of a :class:`KVCache` for the current plan."""

    def __init__(self, cache: KVCache, layer: int):
        self.cache, self.layer = cache, layer

    def attend_inputs(self, k: torch.Tensor, v: torch.Tensor):
        """Store this call's keys and values (B, H, T, D); return the keys and values to
        attend over, the mask, and whether attention is causal inside the chunk."""
        c, plan = self.cache, self.cache._plan
        ks, vs = c.k[self.layer], c.v[self.layer]
        if plan.write is not None:
            start, end = plan.write
            ks[:, :, start:end], vs[:, :, start:end] = k, v
            return ks[:, :, :end], vs[:, :, :end], plan.mask, plan.causal
        rows, slots, t = plan.scatter
        if plan.concat:  # attend beside the cached keys, then keep the last `size`
            keys, values = torch.cat([ks, k], 2), torch.cat([vs, v], 2)
            ks[rows, :, slots], vs[rows, :, slots] = k[rows, :, t], v[rows, :, t]
            return keys, values, plan.mask, False
        ks[rows, :, slots], vs[rows, :, slots] = k[:, :, 0], v[:, :, 0]
        n = min(c.size, c.filled + 1)
        return ks[:, :, :n], vs[:, :, :n], plan.mask, False


def put_rows(cache, at: torch.Tensor, rows, model, ctx: int):
    """``cache`` with its rows ``at`` replaced by the rows of ``rows`` (a cache of the same
    model), grown by new rows where ``at`` points past its end; ``rows`` itself where there
    is no cache yet (``at`` then counts from 0)."""
    if cache is None:
        return rows
    top = int(at.max()) + 1 if len(at) else 0
    if top > cache.batch:
        cache.extend(model.new_cache(top - cache.batch, ctx))
    cache.put(at, rows)
    return cache
