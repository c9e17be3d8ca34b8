"""Likelihood of held-out music under a model: negative log-likelihood per token."""

from __future__ import annotations

import numpy as np
import torch

from aurl.data.shards import Shard
from aurl.data.windows import eval_windows
from aurl.models import Transformer
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
