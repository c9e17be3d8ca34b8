"""What steering knows of every row's music so far (:mod:`aurl.generate.steer`), updated
token by token as the rows are sampled."""

from __future__ import annotations

import torch

from aurl.tokens.mask import RowTensors
from aurl.tokens.vocab import DRUM_PROGRAM, TokenType, Vocabulary

T = TokenType
NEVER = -1e4  # where a track that has not sounded yet last ended


class Bars(RowTensors):
    """What steering knows of every row's present bar, updated token by token: the notes
    started in it, the sum and count of pitches at its earlier positions and at the present
    one, the last bar's mean pitch, the drum tracks declared (whose notes count for density
    only), every track's voice and its last pitch in the present pass, its pitch before the
    present position, and whether it sounded a note at it; the present position (``at``,
    -1 before the bar's first), the bar's length and where each track's last note ends
    (``end``, in steps from the bar's start; far below 0 before its first in the pass)."""

    _ROWS = ("notes", "done_sum", "done_count", "here_sum", "here_count", "last_mean",
             "declaring", "track", "drum", "voice", "last", "before", "here", "at", "length",
             "end")  # fmt: skip

    def __init__(self, vocab: Vocabulary, batch: int, device: torch.device | str = "cpu"):
        self.types = torch.as_tensor(vocab.types, device=device)
        self.values = torch.as_tensor(vocab.values, device=device).clamp(min=0)
        self.n_tracks = max(vocab.counts[T.TRACK], 1)
        z = lambda dtype=torch.long: torch.zeros(batch, dtype=dtype, device=device)  # noqa: E731
        self.notes, self.done_count, self.here_count, self.track = z(), z(), z(), z()
        self.done_sum, self.here_sum = z(torch.float32), z(torch.float32)
        self.last_mean = torch.full((batch,), float("nan"), device=device)
        self.declaring = torch.ones(batch, dtype=torch.bool, device=device)
        self.drum = torch.zeros(batch, self.n_tracks, dtype=torch.bool, device=device)
        self.voice = torch.full((batch, self.n_tracks), -1, dtype=torch.long, device=device)
        self.last = torch.full((batch, self.n_tracks), float("nan"), device=device)
        self.before = self.last.clone()
        self.here = torch.zeros(batch, self.n_tracks, dtype=torch.bool, device=device)
        self.bar_steps = torch.as_tensor(vocab.bar_steps, device=device)
        self.at = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.length = torch.full((batch,), 4 * vocab.config.steps_per_quarter, device=device)
        self.end = torch.full((batch, self.n_tracks), NEVER, device=device)

    def update(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Take one token per row (B,), only where ``active``."""
        on = torch.ones_like(tokens, dtype=torch.bool) if active is None else active
        kind, value = self.types[tokens], self.values[tokens]
        rows = torch.arange(len(tokens), device=tokens.device)
        bar, place = on & (kind == T.BAR), on & (kind == T.POSITION)
        track = on & (kind == T.TRACK)
        self.track = torch.where(track, value.clamp(max=self.n_tracks - 1), self.track)
        drum = self.drum[rows, self.track]
        self.drum[rows, self.track] = drum | (on & self.declaring & (kind == T.PROGRAM)
                                              & (value == DRUM_PROGRAM))  # fmt: skip
        sung = on & self.declaring & (kind == T.VOICE)
        self.voice[rows, self.track] = torch.where(sung, value, self.voice[rows, self.track])
        pitch = on & (kind == T.PITCH)
        moved = bar | place
        self.before = torch.where(moved[:, None], self.last, self.before)
        self.here &= ~moved[:, None]
        last = self.last[rows, self.track]
        self.last[rows, self.track] = torch.where(pitch, value.float(), last)
        self.here[rows, self.track] |= pitch
        new_pass = on & (kind == T.INFILL)
        self.last[new_pass] = float("nan")
        self.before[new_pass] = float("nan")
        self.notes = torch.where(bar, 0, self.notes + pitch.long())
        tuned = pitch & ~drum & ~self.declaring
        self.here_sum = self.here_sum + torch.where(tuned, value.float(), 0.0)
        self.here_count = self.here_count + tuned.long()
        # the present position's notes join the bar's
        self.done_sum = torch.where(moved, self.done_sum + self.here_sum, self.done_sum)
        self.done_count = torch.where(moved, self.done_count + self.here_count, self.done_count)
        self.here_sum = torch.where(moved, 0.0, self.here_sum)
        self.here_count = torch.where(moved, 0, self.here_count)
        ended = bar & (self.done_count > 0)
        self.last_mean = torch.where(ended, self.done_sum / self.done_count.clamp(min=1),
                                     self.last_mean)  # fmt: skip
        self.done_sum = torch.where(bar, 0.0, self.done_sum)
        self.done_count = torch.where(bar, 0, self.done_count)
        self.declaring &= ~bar
        self._timing(tokens, on, rows)

    def _timing(self, tokens: torch.Tensor, on: torch.Tensor, rows: torch.Tensor) -> None:
        """Follow the present position, the bar's length and where each track's notes end."""
        kind, value = self.types[tokens], self.values[tokens]
        bar = on & (kind == T.BAR)
        self.end = torch.where(bar[:, None], self.end - self.length[:, None], self.end)
        sig = on & (kind == T.TIMESIG)
        self.length = torch.where(sig, self.bar_steps[tokens].to(self.length.dtype), self.length)
        self.at = torch.where(on & (kind == T.POSITION), value, torch.where(bar, -1, self.at))
        ends = on & (kind == T.DURATION)
        end = self.end[rows, self.track]
        self.end[rows, self.track] = torch.where(ends, (self.at + value + 1).float(), end)
        self.end[on & (kind == T.INFILL)] = NEVER

    def mean(self) -> torch.Tensor:
        """Every row's reference mean pitch: of its bar's earlier positions, else of its last
        bar (NaN: no note yet)."""
        here = self.done_sum / self.done_count.clamp(min=1)
        return torch.where(self.done_count > 0, here, self.last_mean)
