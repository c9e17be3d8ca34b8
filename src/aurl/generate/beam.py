"""Beam search over the step engine, with the grammar mask and a length penalty.

Every step extends each live beam by every legal token and keeps the ``beams`` best by total
log-probability; a hypothesis that ends (EOS, the bar limit, the token budget) is scored as
``log p / new_tokens ** length_penalty``. A live beam is dropped once no continuation of it
can beat the best finished hypothesis (log-probabilities only fall as a sequence grows), so
with enough beams the search is exact. The search also ends once ``beams`` hypotheses have
ended and no live beam scores better at its current length than the best of them (the usual
stopping rule: with a length penalty, a live beam could in principle still overtake).
"""

from __future__ import annotations

import math

import torch

from aurl.generate.engine import Engine, SamplingConfig
from aurl.tokens import EOS, TokenType, Vocabulary


@torch.inference_mode()
def beam_search(model, vocab: Vocabulary, prompt: torch.Tensor, max_bars: int, max_tokens: int,
                config: SamplingConfig, plan=None) -> tuple[torch.Tensor, float]:  # fmt: skip
    """The best continuation of ``prompt`` (1-D) with ``config.beams`` beams, and its score
    (under the controls ``plan``, if given).

    Returns the ids (prompt included) and the length-normalised log-probability.
    """
    engine = Engine(model, vocab, config, None)
    engine.add([prompt], max_bars, max_tokens, [plan])
    bar_id, K, alpha = int(vocab.offsets[TokenType.BAR]), config.beams, config.length_penalty
    scores = torch.zeros(1, device=engine.device)  # (live,) total log p of each live beam
    best: tuple[float, torch.Tensor] | None = None
    ended = 0  # hypotheses finished so far
    for step in range(1, max_tokens + 1):
        logp = _step_logp(engine, bar_id)  # (live, V)
        V = logp.shape[1]
        cand = (scores[:, None] + logp).flatten()
        top = torch.topk(cand, min(2 * K, int(torch.isfinite(cand).sum()))).indices
        keep, kept_scores = [], []
        for i, total in zip(top.tolist(), cand[top].tolist(), strict=True):
            beam, tok = divmod(i, V)
            if tok == EOS or step == max_tokens:
                score, ended = total / step**alpha, ended + 1
                if best is None or score > best[0]:
                    best = (score, torch.cat([engine.row(beam), _id(tok, engine)]))
            elif len(keep) < K and (best is None or _bound(total, step, max_tokens, alpha)
                                    > best[0]):  # fmt: skip
                keep.append(i)
                kept_scores.append(total)
        if not keep or (ended >= K and max(kept_scores) / step**alpha < best[0]):
            break  # nothing left, or K ended and no live beam is ahead of the best
        index = torch.tensor(keep, device=engine.device)
        engine.reorder(index // V)
        engine.advance(index % V, torch.ones(len(keep), dtype=torch.bool, device=engine.device))
        scores = torch.tensor(kept_scores, device=engine.device)
    if best is None:
        raise ValueError("beam search found no hypothesis that ends")
    return best[1], best[0]


def _bound(total: float, step: int, max_tokens: int, alpha: float) -> float:
    """The best score any continuation of a live beam could reach: its log p can only fall,
    and it ends with between ``step + 1`` and ``max_tokens`` new tokens."""
    return max(total / n**alpha for n in (step + 1, max_tokens))


def _step_logp(engine: Engine, bar_id: int) -> torch.Tensor:
    """Log-probabilities (live, V) of the next token under the grammar; a Bar past the bar
    limit counts as EOS, as in sampling."""
    logp = torch.log_softmax(engine.next_logits().float(), -1)
    over = engine.state.bars >= engine.max_bars
    if bool(over.any()):
        logp[over, EOS] = torch.logaddexp(logp[over, EOS], logp[over, bar_id])
        logp[over, bar_id] = -math.inf
    return logp


def _id(tok: int, engine: Engine) -> torch.Tensor:
    return torch.tensor([tok], dtype=torch.long, device=engine.device)
