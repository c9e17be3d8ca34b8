"""Likelihood of held-out music under a model: negative log-likelihood per token.

:func:`test_nll` is a model's one test figure: training and evaluation both report it, over
windows as long as the model was trained on.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from aurl.data.shards import Shard
from aurl.data.windows import eval_windows
from aurl.evaluate.ngram import fit_kneser_ney
from aurl.evaluate.ngram import nll_per_token as ngram_nll
from aurl.models import ModelFolder, Transformer
from aurl.tokens import PAD


@torch.no_grad()
def nll_per_token(model: Transformer, shard: Shard, seq_len: int, device, batch: int = 16,
                  limit: int = 0) -> tuple[float, int]:  # fmt: skip
    """Mean negative log-likelihood (nats) per predicted token over a split, and the count."""
    model.eval()
    windows = eval_windows(shard, seq_len)
    if limit:
        windows = windows[:limit]
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        chunk = windows[i : i + batch]
        arr = np.full((len(chunk), seq_len + 1), PAD, np.int64)
        for j, w in enumerate(chunk):
            arr[j, : len(w)] = w
        t = torch.from_numpy(arr).to(device)
        logits = model(t[:, :-1])
        target = t[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            target.reshape(-1),
            ignore_index=PAD,
            reduction="sum",
        )
        total += loss.item()
        count += int((target != PAD).sum())
    return total / max(count, 1), count


def context_length(folder: ModelFolder) -> int:
    """The window length a model is measured with: the ``seq_len`` it was trained on
    (``training.seq_len`` in its meta), else the longest context it takes."""
    seq_len = folder.meta.get("training", {}).get("seq_len")
    return int(seq_len) if seq_len else folder.model.config.max_seq_len


def test_nll(folder: ModelFolder, shard: Shard, device: torch.device | str) -> tuple[float, int]:
    """A model's mean negative log-likelihood (nats) per predicted token over ``shard`` (the
    test split of a dataset tokenized with the model's tokenizer), and the token count.

    Windows are :func:`context_length` tokens long. Load the model with
    :func:`aurl.models.load_model` (float32 attention) so that every caller reports the same
    number.
    """
    return nll_per_token(folder.model, shard, context_length(folder), device)


def likelihood_report(
    folder: ModelFolder,
    test: Shard,
    train_ids: list[np.ndarray],
    test_ids: list[np.ndarray],
    ngram_order: int,
    device: torch.device,
) -> tuple[dict, dict[str, float]]:
    """The report's likelihood section: the model's :func:`test_nll` against a Kneser–Ney
    n-gram fitted on the train split and against a uniform guess.

    The n-gram order is lowered where its contexts would not fit in 62 bits.

    Returns:
        The section, and the seconds spent on the model (``model_nll``) and on the n-gram
        (``ngram``).
    """
    t = time.perf_counter()
    nll, count = test_nll(folder, test, device)
    seconds = {"model_nll": time.perf_counter() - t}
    t = time.perf_counter()
    size = folder.tokenizer.vocab_size
    order = max(1, min(ngram_order, int(62 // math.log2(size))))
    ngram = fit_kneser_ney(train_ids, size, order)
    ngram_value, ngram_count = ngram_nll(ngram, test_ids)
    seconds["ngram"] = time.perf_counter() - t
    section = {
        "test_pieces": len(test_ids),
        "model": _nll_row(nll, count) | {"context": context_length(folder)},
        "ngram": _nll_row(ngram_value, ngram_count)
        | {
            "order": order,
            "smoothing": "interpolated Kneser-Ney",
            "discounts": [round(tb.discount, 4) for tb in ngram.tables],
        },
        "uniform": _nll_row(math.log(size), count),
    }
    return section, seconds


def _nll_row(nll: float, count: int) -> dict:
    return {
        "nll_per_token": nll,
        "perplexity": math.exp(nll),
        "bits_per_token": nll / math.log(2),
        "tokens": count,
    }
