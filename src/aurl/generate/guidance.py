"""Classifier-free guidance for controls: every row that has a plan is decoded twice, once as
it is and once with its control tokens left out (the unconditional twin), and the next token
is drawn from ``u + scale * (c - u)`` of the two rows' logits ``c`` and ``u``.

Training leaves each control type out of a window with some chance, so the model knows
sequences without them; the difference of the two predictions is what the controls add, and a
scale above 1 makes more of it. The twin takes every token the row takes except control tokens
(Style, Key and the bar controls), so it reads the same music without the requests.

The twins' cache takes each step's token for every row in one call, and the rows that just
took a control token forget it again (``unwind``), keeping their logits from before it.
Without the cache the twins' logits are computed from each row's whole context every step:
the slow reference of the cached path. Each row has its own scale, so rows of different
requests share a batch; a row without a plan, or with a scale of 1, keeps its own logits.
"""

from __future__ import annotations

import torch

from aurl.models.cache import put_rows
from aurl.tokens import PAD, Vocabulary
from aurl.tokens.controls import CONTROL_TYPES


def check_scale(scale: float) -> float:
    """``scale`` as a float.

    Raises:
        ValueError: a scale that is not above 0 (or not a number).
    """
    if not float(scale) > 0:
        raise ValueError(f"guidance must be above 0, not {scale}")
    return float(scale)


def drop_control_tokens(context: torch.Tensor, sizes: torch.Tensor,
                        is_control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Right-padded rows (B, W) of ``sizes`` tokens without their control tokens, packed to the
    left and padded with PAD, and their new sizes."""
    j = torch.arange(context.shape[1], device=context.device)
    keep = (j < sizes[:, None]) & ~is_control[context]
    place = torch.where(keep, keep.long().cumsum(1) - 1, context.shape[1])
    out = torch.full((len(context), context.shape[1] + 1), PAD, dtype=context.dtype,
                     device=context.device)  # fmt: skip
    out.scatter_(1, place, context)
    new = keep.sum(1)
    return out[:, : max(int(new.max()), 1)], new


class Guide:
    """The unconditional twins of an engine's rows.

    Args:
        model: the engine's model.
        vocab: its vocabulary (with controls).
        use_cache: decode the twins with a KV cache (else recompute every step).
        device: where the tensors live.

    Raises:
        ValueError: a model with bar summaries.
    """

    def __init__(self, model, vocab: Vocabulary, use_cache: bool, device):
        if getattr(model.config, "bar_summaries", False):
            raise ValueError("guidance does not work with bar-summary (hierarchical) models")
        self.model, self.use_cache = model, use_cache
        self.scale = torch.ones(0, device=device)  # per row
        types = torch.as_tensor(vocab.types, device=device)
        self.is_control = torch.isin(types, torch.tensor([int(k) for k in CONTROL_TYPES],
                                                         device=device))  # fmt: skip
        self.logits = torch.zeros(0, vocab.size, device=device)
        self.cache = None
        self.ctx = model.config.max_seq_len

    def prefill(self, context: torch.Tensor, sizes: torch.Tensor):
        """Twin logits (n, V) after each row's context (B, W) of ``sizes`` tokens without its
        controls, and a cache holding those contexts (None without the cache)."""
        ids, n = drop_control_tokens(context, sizes, self.is_control)
        if not self.use_cache:
            return self._whole(ids, n), None
        cache = self.model.new_cache(len(ids), self.ctx)
        kwargs = {"lengths": n} if bool((n != ids.shape[1]).any()) else {}
        return self.model(ids, cache=cache, last_only=True, **kwargs)[:, -1].float(), cache

    def _whole(self, ids: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        rows = [self.model(ids[i : i + 1, : int(k)], last_only=True)[:, -1]
                for i, k in enumerate(n.tolist())]  # fmt: skip
        return torch.cat(rows).float()

    def grow(self, batch: int) -> None:
        """Make room for ``batch`` rows (new ones unguided)."""
        extra = batch - len(self.logits)
        if extra > 0:
            grow = torch.zeros(extra, self.logits.shape[1], device=self.logits.device)
            self.logits = torch.cat([self.logits, grow])
            self.scale = torch.cat([self.scale, torch.ones(extra, device=self.scale.device)])

    def put(self, rows: torch.Tensor, logits: torch.Tensor, cache,
            scale: torch.Tensor | None = None, at: torch.Tensor | None = None) -> None:  # fmt: skip
        """Rows ``rows`` start from ``logits`` and ``cache`` (its rows go to the cache rows
        ``at``, which follow the engine's), with guidance ``scale`` (per row; default: as
        they had)."""
        if self.logits.shape[1] != logits.shape[1]:  # the model's vocabulary may be smaller
            self.logits = torch.zeros(len(self.logits), logits.shape[1],
                                      device=self.logits.device)  # fmt: skip
        self.logits[rows] = logits
        if scale is not None:
            self.scale[rows] = scale.to(self.scale)
        if cache is not None:
            self.cache = put_rows(self.cache, at, cache, self.model, self.ctx)

    def step(self, tok: torch.Tensor, held: torch.Tensor) -> None:
        """Every twin the cache holds (rows ``held``, in its order) takes ``tok`` (B,) but
        control tokens (cached path only)."""
        tok = tok[held]
        skip = self.is_control[tok]
        logits = self.model(tok[:, None], cache=self.cache, last_only=True)[:, -1].float()
        if bool(skip.any()):
            self.cache.unwind(skip.nonzero().flatten())
        self.logits[held] = torch.where(skip[:, None], self.logits[held], logits)

    def recompute(self, context: torch.Tensor, sizes: torch.Tensor) -> None:
        """Without the cache: every twin's logits from its row's whole context."""
        self.logits = self._whole(*drop_control_tokens(context, sizes, self.is_control))

    def mix(self, logits: torch.Tensor, planned: torch.Tensor) -> torch.Tensor:
        """Guided logits (B, V) of the rows with a plan and a scale other than 1; the others'
        as they are."""
        u, s = self.logits, self.scale[:, None]
        return torch.where(planned[:, None] & (s != 1), u + s * (logits - u), logits)

    def select(self, index: torch.Tensor, source: torch.Tensor | None) -> None:
        """Keep, repeat or reorder twins as the engine's rows (beam search): row i becomes
        old row ``index[i]``, and the cache keeps its rows ``source``."""
        self.logits, self.scale = self.logits[index], self.scale[index]
        if self.cache is not None and source is not None:
            self.cache.select(source)
