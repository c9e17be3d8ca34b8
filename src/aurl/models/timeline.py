"""Musical positions: where each token sits in the music, as embeddings added to the tokens.

Every token gets the index of its bar within the context (cycled over ``bar_cycle`` bars: bar
in phrase) and its grid step within the bar (the last Position token since the Bar; 0 before
any), the same facts the grammar's timeline tracks. They are computed from the ids with tensor
operations; a KV cache carries each row's bar count and step between calls, so cached
generation gives what the full forward gives.
"""

from __future__ import annotations

import torch
from torch import nn


class MusicalPositions(nn.Module):
    """Bar-in-phrase and step-in-bar embeddings (C wide each).

    Args:
        width: the model width C.
        bar_id: the Bar token's id.
        position_first, position_count: the id of the first Position token and how many.
        bar_cycle: bars before the bar index repeats.
    """

    def __init__(self, width: int, bar_id: int, position_first: int, position_count: int,
                 bar_cycle: int):  # fmt: skip
        super().__init__()
        self.bar_id, self.first, self.count, self.cycle = (
            bar_id,
            position_first,
            position_count,
            bar_cycle,
        )
        self.bar = nn.Embedding(bar_cycle, width)
        self.step = nn.Embedding(position_count + 1, width)  # 0: no Position yet in the bar

    def timeline(self, idx: torch.Tensor, bars_before: torch.Tensor | None = None,
                 step_before: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """See :func:`timeline` (this model's Bar and Position ids)."""
        return timeline(idx, self.bar_id, self.first, self.count, bars_before, step_before)

    def forward(self, bars: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """(B, T, C) embeddings for the timeline."""
        return self.bar(bars % self.cycle) + self.step(step)


def timeline(idx: torch.Tensor, bar_id: int, position_first: int, position_count: int,
             bars_before: torch.Tensor | None = None, step_before: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Bar count (B, T) and step index (B, T) of every token of ``idx`` (B, T): the Bars so
    far (the first Bar counts 1) and 1 + the grid step of the last Position since the Bar (0
    before any), after ``bars_before`` Bars and at step index ``step_before`` (B,) (both 0 by
    default)."""
    B, T = idx.shape
    is_bar = idx == bar_id
    bars = is_bar.long().cumsum(1)
    if bars_before is not None:
        bars = bars + bars_before[:, None]
    is_pos = (idx >= position_first) & (idx < position_first + position_count)
    value = torch.where(is_pos, idx - position_first + 1, 0)  # a Bar resets to 0
    marked = is_pos | is_bar
    where = torch.where(marked, torch.arange(T, device=idx.device), -1).cummax(1).values
    step = value.gather(1, where.clamp(min=0))
    carry = (
        torch.zeros(B, dtype=torch.long, device=idx.device) if step_before is None else step_before
    )
    step = torch.where(where >= 0, step, carry[:, None])
    return bars, step
