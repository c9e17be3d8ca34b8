"""Sampling filters: small pure functions from logits (B, V) to logits (B, V)."""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def apply_mask(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Forbid every token where ``allowed`` (B, V) is False."""
    return logits.masked_fill(~allowed, NEG_INF)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide by ``t`` (> 0): below 1 sharpens, above 1 flattens."""
    return logits if t == 1.0 else logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (0 keeps all)."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p(logits: torch.Tensor, p: float, candidates: int = 64) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of tokens whose probability reaches ``p``.

    Looks at the ``candidates`` most likely tokens first (a partial sort); only when they
    hold less than ``p`` of the mass in some row does it sort whole rows.
    """
    if p >= 1.0:
        return logits
    nucleus = top_p_candidates(logits, p, candidates)
    if nucleus is None:
        return top_p_sorted(logits, p)
    top, order = nucleus
    return torch.full_like(logits, NEG_INF).scatter_(-1, order, top)


def top_p_candidates(
    logits: torch.Tensor, p: float, candidates: int = 64
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The nucleus as (logits, ids) of the ``candidates`` most likely tokens per row, the rest
    of them set to -inf; None when some row needs more candidates to reach ``p``."""
    k = min(candidates, logits.size(-1))
    top, order = torch.topk(logits, k, dim=-1)
    probs = torch.exp(top - torch.logsumexp(logits, dim=-1, keepdim=True))
    cumulative = torch.cumsum(probs, dim=-1)
    if k < logits.size(-1) and not bool((cumulative[:, -1] >= p).all()):
        return None
    return top.masked_fill(cumulative - probs > p, NEG_INF), order  # mass before > p: out


def top_p_sorted(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter by a full sort of every row: the plain reference for :func:`top_p`."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # mass strictly before each token
    sorted_logits = sorted_logits.masked_fill(before > p, NEG_INF)
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


def gumbel_sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from softmax(logits) by the Gumbel-max trick: (B, V) -> (B,).

    Same distribution as ``multinomial(softmax(logits))`` at a fraction of its cost.
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    u = u.clamp_(min=torch.finfo(u.dtype).tiny)
    return (logits - torch.log(-torch.log(u))).argmax(dim=-1)
