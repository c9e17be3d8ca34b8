"""Batch sampling with the KV cache and the grammar mask.

Every sequence of a batch shares one prompt length, so one cache position serves all. A
sequence stops at EOS, or when it is about to start one bar more than asked for (that Bar
becomes EOS). Past the model's context the cache is rebuilt from the last bars.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aurl.generate import filters
from aurl.generate.filters import NEG_INF
from aurl.models import Transformer
from aurl.models.vae import VAE, LatentDecoder
from aurl.tokens import EOS, PAD, TokenType, Vocabulary
from aurl.tokens.mask import GrammarState


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    grammar: bool = True
    use_cache: bool = True
    fill_bars: bool = True  # forbid EOS before the last bar has started


def _next_logits(model, seq, cache, pos, use_cache):
    """Logits (B, V) for the token after ``seq[:, :pos]`` given the cache holds ``pos - 1``."""
    if use_cache:
        return model(seq[:, pos - 1 : pos], cache=cache, start=pos - 1, last_only=True)[:, -1]
    return model(seq[:, :pos], last_only=True)[:, -1]


@torch.inference_mode()
def sample(
    model: Transformer,
    vocab: Vocabulary,
    prompt: torch.Tensor,
    max_bars: int,
    max_tokens: int,
    config: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continue ``prompt`` (B, T0) until EOS or ``max_bars`` bars in all (prompt included).

    With ``config.fill_bars`` a sequence cannot end before its last bar has started.

    Returns (B, T) ids; finished sequences are padded with PAD after their EOS.
    """
    config = config or SamplingConfig()
    model.eval()
    B, T0 = prompt.shape
    total = T0 + max_tokens
    seq = torch.full((B, total), PAD, dtype=torch.long, device=prompt.device)
    seq[:, :T0] = prompt
    state = GrammarState(vocab, B, prompt.device)
    state.feed(prompt)
    bar_id = vocab.offsets[TokenType.BAR]
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    ctx = model.config.max_seq_len
    cache = None

    def prefill(offset: int, pos: int) -> torch.Tensor:
        nonlocal cache
        if config.use_cache:
            cache = model.new_cache(B, ctx)
        return model(seq[:, offset:pos], cache=cache, start=0, last_only=True)[:, -1]

    offset = 0 if ctx >= T0 else T0 - ctx
    logits = prefill(offset, T0)
    pos = T0
    while pos < total:
        if config.grammar:
            logits = filters.apply_mask(logits, state.mask())
        if config.fill_bars:
            logits[:, EOS] = torch.where(state.bars < max_bars, NEG_INF, logits[:, EOS])
        tok = logits.argmax(dim=-1) if config.greedy else _draw(logits, config, generator)
        over = (tok == bar_id) & (state.bars >= max_bars)
        tok = torch.where(over | done, torch.where(done, PAD, EOS), tok)
        seq[:, pos] = tok
        state.update(tok)
        done |= tok == EOS
        pos += 1
        if pos == total or bool(done.all()):
            break
        if pos - offset >= ctx:  # context full: keep the last bars and rebuild
            offset += _restart_point(seq[0, offset:pos], bar_id, ctx)
            logits = prefill(offset, pos)
        elif config.use_cache:
            logits = model(seq[:, pos - 1 : pos], cache=cache, start=pos - 1 - offset,
                           last_only=True)[:, -1]  # fmt: skip
        else:
            logits = model(seq[:, offset:pos], last_only=True)[:, -1]
    return seq[:, :pos]


def _draw(logits: torch.Tensor, config: SamplingConfig, generator) -> torch.Tensor:
    """One token per row after temperature, top-k and top-p. (B, V) -> (B,)."""
    logits = filters.top_k(filters.temperature(logits, config.temperature), config.top_k)
    if config.top_p >= 1:
        return filters.gumbel_sample(logits, generator)
    nucleus = filters.top_p_candidates(logits, config.top_p)
    if nucleus is None:  # the candidates hold too little mass: sort whole rows
        return filters.gumbel_sample(filters.top_p_sorted(logits, config.top_p), generator)
    top, ids = nucleus  # draw among the candidates only: (B, K) instead of (B, V)
    return ids.gather(-1, filters.gumbel_sample(top, generator).unsqueeze(-1)).squeeze(-1)


def _restart_point(window: torch.Tensor, bar_id: int, ctx: int) -> int:
    """Index in ``window`` of a Bar near its middle, to keep the last bars as context."""
    bars = (window == bar_id).nonzero().flatten().tolist()
    candidates = [b for b in bars if ctx // 4 <= b <= 3 * ctx // 4]
    return candidates[0] if candidates else ctx // 2


def sample_latents(
    vae: VAE,
    vocab: Vocabulary,
    z: tuple[torch.Tensor, torch.Tensor],
    max_tokens: int,
    config: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
    bars: int | None = None,
) -> torch.Tensor:
    """One segment of ``bars`` bars (default: the VAE's K) per row of latents ``z``, from BOS,
    with at most ``max_tokens`` tokens and never more than the decoder's context (a segment is
    decoded in one pass under its latents). Returns (B, T) ids as :func:`sample` does."""
    decoder = LatentDecoder(vae, *z)
    bos = int(vocab.offsets[TokenType.BOS])
    prompt = torch.full((z[0].shape[0], 1), bos, dtype=torch.long, device=z[0].device)
    max_tokens = min(max_tokens, decoder.config.max_seq_len - 1)
    return sample(decoder, vocab, prompt, bars or vae.config.bars, max_tokens, config, generator)
