"""Drawing the samples an evaluation judges: in batches, with a token budget.

A batch runs until its slowest sequence ends, so one sample that never closes its bars would
hold a whole batch for thousands of steps. Every batch therefore first gets a soft budget
(a little over the median number of tokens that as many bars take in the training split);
the samples still unfinished then continue together, in a batch of their own, up to a hard
cap (the most tokens any stretch of as many bars takes in training). A sample that reaches
the hard cap is kept and counted as truncated: a model failure worth knowing about.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import symusic
import torch

from aurl.data.shards import Shard
from aurl.generate.sampler import SamplingConfig, sample
from aurl.models import ModelFolder
from aurl.tokens import BOS, EOS, PAD, Tokenizer, TokenType

# Soft budget over the median length: most samples end within it, and the few that run on
# continue in a small batch, where a step costs far less than in the full one.
SOFT = 1.25


@dataclass
class Sample:
    """One generated sequence: its ids (BOS first), its score, bars and whether it was cut."""

    ids: np.ndarray
    score: symusic.Score
    bars: int
    truncated: bool


@dataclass(frozen=True)
class TokenBudget:
    """Tokens per sample, BOS included: ``soft`` for the whole batch, ``hard`` at most."""

    soft: int
    hard: int


def token_budget(train: Shard, bars: int) -> TokenBudget:
    """Budget from the tokens that every ``bars`` consecutive bars of a training piece take
    (a whole piece where it is shorter): ``SOFT`` times the median, and the maximum (plus
    BOS and EOS)."""
    stretches = []
    for i in range(train.num_pieces):
        start, end = int(train.pieces[i]), int(train.pieces[i + 1])
        lines = train.bars[(train.bars >= start) & (train.bars < end)]
        edges = np.append(lines, end)
        if len(lines) >= bars:
            stretches.append(edges[bars:] - edges[:-bars])
        else:
            stretches.append(np.array([end - start]))
    every = np.concatenate(stretches) if stretches else np.array([64 * bars])
    hard = int(every.max()) + 2
    return TokenBudget(min(hard, int(SOFT * np.median(every)) + 2), hard)


def draw(
    folder: ModelFolder,
    device: torch.device,
    num: int,
    bars: int,
    sampling: SamplingConfig,
    seed: int,
    budget: TokenBudget,
    batch: int,
) -> tuple[list[Sample], int, float]:
    """Draw ``num`` samples of ``bars`` bars from BOS with the model of ``folder`` on
    ``device``, ``batch`` at a time.

    Batch ``k`` uses seed ``seed + k``, so the result depends only on the arguments.

    Returns:
        The samples, the new tokens and the seconds spent sampling.
    """
    model, tokenizer = folder.model, folder.tokenizer
    vocab = tokenizer.vocab
    bar_id = vocab.offsets[TokenType.BAR]
    out, wall = [], 0.0
    for k, first in enumerate(range(0, num, batch)):
        size = min(batch, num - first)
        generator = torch.Generator(device=device)
        generator.manual_seed(seed + k)
        t0 = time.perf_counter()
        prompt = torch.full((size, 1), BOS, dtype=torch.long, device=device)
        rows = list(sample(model, vocab, prompt, bars, budget.soft - 1, sampling, generator))
        open_rows = [i for i, row in enumerate(rows) if not (row == EOS).any()]
        if open_rows and budget.hard > budget.soft:  # every open row is budget.soft long
            more = sample(model, vocab, torch.stack([rows[i] for i in open_rows]), bars,
                          budget.hard - budget.soft, sampling, generator)  # fmt: skip
            for i, row in zip(open_rows, more, strict=True):
                rows[i] = row
        wall += time.perf_counter() - t0
        for row in rows:
            row = row.cpu().numpy()
            ids = row[row != PAD]
            bars_drawn = int((ids == bar_id).sum())
            out.append(Sample(ids, tokenizer.decode(ids), bars_drawn, EOS not in ids))
    tokens = sum(len(s.ids) - 1 for s in out)
    return out, tokens, wall


def validity(tokenizer: Tokenizer, samples: list[Sample]) -> dict:
    """How many samples the grammar of ``tokenizer`` accepts, how far the others get, and
    why they fail.

    Violation reasons are grouped with their numbers replaced by ``N``.
    """
    reasons, lengths = Counter(), []
    for s in samples:
        violation = tokenizer.grammar.validate(s.ids)
        lengths.append(len(s.ids) if violation is None else violation.index)
        if violation is not None:
            reasons[re.sub(r"-?\d+(\.\d+)?", "N", violation.reason)] += 1
    valid = len(samples) - sum(reasons.values())
    return {
        "samples": len(samples),
        "valid": valid,
        "valid_rate": valid / len(samples) if samples else None,
        "tokens_before_first_violation_mean": float(np.mean(lengths)) if lengths else None,
        "tokens": int(sum(len(s.ids) for s in samples)),
        "violations": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
