"""Sampling a batch: ancestral sampling, best-of-N and beam search, all on the step engine.

A sequence stops at EOS, or when it is about to start one bar more than asked for (that Bar
becomes EOS), or when its token budget is spent (see :mod:`aurl.generate.engine`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aurl.generate.beam import beam_search
from aurl.generate.engine import Engine, SamplingConfig, run
from aurl.generate.guidance_default import guidance_for, steer_for
from aurl.models.vae import VAE, LatentDecoder
from aurl.tokens import PAD, TokenType, Vocabulary

__all__ = ["SamplingConfig", "default_sampling", "sample", "sample_latents"]


def default_sampling(request=None, filling: bool = False) -> SamplingConfig:
    """What the CLI and the server sample with when given no option: steered and guided as
    :mod:`aurl.generate.guidance_default` decides for a ``ControlRequest`` (or None), and
    for infilling and harmonizing (``filling``) steered in their voice leading."""
    steer = steer_for(None, request, filling)
    guidance = guidance_for(None, request) if filling else guidance_for(None, request, steer)
    return SamplingConfig(guidance=guidance, steer=steer)


@torch.inference_mode()
def sample(
    model,
    vocab: Vocabulary,
    prompt: torch.Tensor | list[torch.Tensor],
    max_bars: int,
    max_tokens: int,
    config: SamplingConfig | None = None,
    generator: torch.Generator | None = None,
    progress=None,
    plans: list | None = None,
    judge: Callable[[int, torch.Tensor], float] | None = None,
) -> torch.Tensor:
    """Continue each prompt (a (B, T0) batch, or a list of 1-D prompts of any lengths) until
    EOS or ``max_bars`` bars in all (prompt included), with at most ``max_tokens`` new tokens,
    under each prompt's controls ``plans`` if given (see :mod:`aurl.generate.controls`).

    With ``config.fill_bars`` a sequence cannot end before its last bar has started. With
    ``config.best_of`` N, N candidates are sampled per prompt and the one the model finds most
    likely (mean log-probability per new token) is kept; given a ``judge(prompt index,
    candidate ids)`` (higher is better: how well it follows its request), the candidates it
    scores highest, and the likeliest among those. With ``config.beams`` > 1, beam search
    replaces sampling. ``progress(engine)`` is called after every step.

    Returns (B, T) ids, PAD after each sequence's end.
    """
    config = config or SamplingConfig()
    model.eval()
    prompts = list(prompt)
    plans = plans or [None] * len(prompts)
    if config.beams > 1:
        rows = [beam_search(model, vocab, p, max_bars, max_tokens, config, plan)[0]
                for p, plan in zip(prompts, plans, strict=True)]  # fmt: skip
        return pad_rows(rows)
    n = config.best_of
    engine = Engine(model, vocab, config, generator)
    engine.add([p for p in prompts for _ in range(n)], max_bars, max_tokens,
               [plan for plan in plans for _ in range(n)])  # fmt: skip
    run(engine, progress)
    if n == 1:
        return engine.padded()
    new = (engine.length - engine.prompt_len).clamp(min=1)
    likely = (engine.logp / new).tolist()

    def rank(r: int) -> tuple[float, float]:  # the judge's score first, then the likelihood
        return (judge(r // n, engine.row(r)) if judge else 0.0), likely[r]

    return engine.padded([max(range(p * n, (p + 1) * n), key=rank) for p in range(len(prompts))])


def pad_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """1-D id rows as one (n, T) tensor padded with PAD."""
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD, dtype=torch.long,
                     device=rows[0].device)  # fmt: skip
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


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
    config = config or SamplingConfig()
    if config.beams > 1 or config.best_of > 1:
        config = SamplingConfig(**{**config.__dict__, "beams": 1, "best_of": 1})
    decoder = LatentDecoder(vae, *z)
    bos = int(vocab.offsets[TokenType.BOS])
    prompt = torch.full((z[0].shape[0], 1), bos, dtype=torch.long, device=z[0].device)
    max_tokens = min(max_tokens, decoder.config.max_seq_len - 1)
    return sample(decoder, vocab, prompt, bars or vae.config.bars, max_tokens, config, generator)
