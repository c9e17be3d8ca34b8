"""The grammar as tensors: the legal-next-token mask for a batch, for the sampler.

Built from the same table as :mod:`aurl.tokens.grammar`; tests check it against
``Grammar.validate`` token by token.
"""

from __future__ import annotations

import copy

import torch

from aurl.tokens.grammar import _BAR_NO_SIG, _HEAD_TRACK, _START, follow_table
from aurl.tokens.vocab import TokenType, Vocabulary

T = TokenType


class RowTensors:
    """Per-sequence state kept as tensors named in ``_ROWS`` (one row per sequence), with the
    row operations a batch needs when sequences are repeated, reordered, added or replaced."""

    _ROWS: tuple[str, ...] = ()

    def select(self, index: torch.Tensor) -> None:
        """Keep, repeat or reorder rows: row i becomes old row ``index[i]``."""
        for name in self._ROWS:
            setattr(self, name, getattr(self, name)[index])

    def extend(self, other: RowTensors) -> None:
        """Append the rows of ``other``."""
        for name in self._ROWS:
            setattr(self, name, torch.cat([getattr(self, name), getattr(other, name)]))

    def put(self, rows: torch.Tensor, other: RowTensors) -> None:
        """Replace rows ``rows`` with the rows of ``other``, in order."""
        for name in self._ROWS:
            getattr(self, name)[rows] = getattr(other, name)


def bar_lengths(vocab: Vocabulary) -> list[int]:
    """The bar lengths (steps) of the vocabulary's time signatures, in the order that numbers
    them from 1 in ``GrammarState.sig`` (0: unknown, before the first TimeSig)."""
    return sorted({int(x) for x in vocab.bar_steps[vocab.types == T.TIMESIG]})


class GrammarState(RowTensors):
    """The grammar state of a batch of sequences, as tensors, with a vectorized mask.

    The per-step work is a handful of table lookups: ``update`` reads one row of a per-id
    table, and ``mask`` ANDs one row of the type table with one row of a precomputed table of
    legal positions for (current position, current bar length), and with tracks one row of
    a table of legal tracks for (tracks declared, declaring or not) and one row each of the
    tracks and pitches above the last note's at this position.

    Args:
        vocab: the vocabulary.
        batch: number of sequences.
        device: where the state tensors live (the sampler's device).
    """

    def __init__(self, vocab: Vocabulary, batch: int, device: torch.device | str = "cpu"):
        types = torch.as_tensor(vocab.types)
        values = torch.as_tensor(vocab.values)
        is_pos, is_bar, is_sig = types == T.POSITION, types == T.BAR, types == T.TIMESIG
        # Bar lengths are numbered: 0 = unknown (before the first TimeSig), then one per length.
        lengths = bar_lengths(vocab)
        sig_index = torch.zeros(vocab.size, dtype=torch.long)
        for i, length in enumerate(lengths, start=1):
            sig_index[torch.as_tensor(vocab.bar_steps == length)] = i
        # Per id: its type, and what it does to the position and the bar length.
        self.step_table = torch.stack([
            types,
            (~(is_pos | is_bar)).long(),  # 1: the position stays
            torch.where(is_pos, values, -1),  # the new position otherwise (-1 after a Bar)
            is_sig.long(), sig_index, is_bar.long(), (types == T.TRACK).long(),
        ], dim=1).to(device)  # fmt: skip
        table = follow_table(vocab.has_tracks, vocab.has_controls, vocab.has_infill)
        # Fill and Infill are not allowed in a second pass (after Infill).
        self.fills = ((types == T.FILL) | (types == T.INFILL)).to(device)
        self.infill_id = int(vocab.offsets[T.INFILL]) if vocab.has_infill else -1
        self.allowed = torch.as_tensor(table, device=device)[:, types]  # (rows, V)
        # tracks_ok[n, h, v]: id v is allowed with n tracks declared, h = 1 while declaring
        # (then only Track_n), h = 0 in the bars (Track_0 .. Track_n-1).
        n = torch.arange(vocab.counts[T.TRACK] + 1)[:, None]
        ok = torch.stack([values < n, values == n], 1)  # (tracks + 1, 2, V)
        self.tracks_ok = (ok | (types != T.TRACK)).to(device) if vocab.has_tracks else None
        # above[x + 1, v]: id v is no Track (or no Pitch) at or below value x
        above = lambda kind, n: ((values > torch.arange(-1, n)[:, None])  # noqa: E731
                                 | (types != kind)).to(device)  # fmt: skip
        self.track_above = above(T.TRACK, vocab.counts[T.TRACK]) if vocab.has_tracks else None
        self.pitch_above = above(T.PITCH, vocab.counts[T.PITCH]) if vocab.has_tracks else None
        # per id: 1 for Position and Bar (a new place), 2 for Track, 3 for Pitch, else 0
        place = (is_pos | is_bar).long() + 2 * (types == T.TRACK) + 3 * (types == T.PITCH)
        self.note_table = torch.stack([place, values.clamp(min=-1)], 1).to(device)
        # positions[p + 1, s, v]: id v is allowed at position p in a bar of length number s
        bar_len = torch.tensor([0, *lengths])
        p = torch.arange(-1, vocab.max_bar_steps)
        ok = (values > p[:, None, None]) & (values < bar_len[None, :, None])
        self.positions = (ok | ~is_pos).to(device)
        self.last = torch.full((batch,), _START, dtype=torch.long, device=device)
        self.pos = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.sig = torch.zeros(batch, dtype=torch.long, device=device)
        self.bars = torch.zeros(batch, dtype=torch.long, device=device)
        self.tracks = torch.zeros(batch, dtype=torch.long, device=device)
        self.filled = torch.zeros(batch, dtype=torch.bool, device=device)
        self.at_track = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.at_pitch = torch.full((batch,), -1, dtype=torch.long, device=device)

    # the per-sequence tensors
    _ROWS = ("last", "pos", "sig", "bars", "tracks", "filled", "at_track", "at_pitch")

    def update(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Advance every sequence by one token (only where ``active``, if given).
        ``tokens``: (B,) ids."""
        kind, keep_pos, new_pos, is_sig, sig, is_bar, is_track = self.step_table[tokens].unbind(1)
        if active is not None:
            keep_pos, is_sig = keep_pos.bool() | ~active, is_sig.bool() & active
            is_bar, is_track = is_bar * active, is_track * active
        pos = torch.where(keep_pos.bool(), self.pos, new_pos)
        self.sig = torch.where(is_sig.bool(), sig, self.sig)
        declaring = self.bars == 0
        if self.track_above is not None:
            self._note_order(tokens, active, declaring)
        self.tracks = self.tracks + is_track * declaring
        self.bars = self.bars + is_bar
        no_sig = is_bar.bool() & (self.sig == 0)
        last = torch.where(no_sig, _BAR_NO_SIG, kind)
        last = torch.where(is_track.bool() & declaring, _HEAD_TRACK, last)
        self.pos = pos
        self.last = last if active is None else torch.where(active, last, self.last)
        if self.infill_id >= 0:
            opened = tokens == self.infill_id
            self.filled |= opened if active is None else opened & active

    def _note_order(self, tokens: torch.Tensor, active: torch.Tensor | None,
                    declaring: torch.Tensor) -> None:  # fmt: skip
        """Track the last note's track and pitch at this position (with tracks)."""
        place, value = self.note_table[tokens].unbind(1)
        if active is not None:
            place = place * active
        new_place = place == 1
        track = (place == 2) & ~declaring
        self.at_track = torch.where(new_place, -1, torch.where(track, value, self.at_track))
        self.at_pitch = torch.where(new_place | track, -1,
                                    torch.where(place == 3, value, self.at_pitch))  # fmt: skip

    def feed(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Advance by a whole prompt. ``ids``: (B, T); with ``lengths`` (B,) only the first
        ``lengths[b]`` tokens of row b (right padding)."""
        for t in range(ids.shape[1]):
            self.update(ids[:, t], None if lengths is None else lengths > t)

    def fresh(self, batch: int) -> GrammarState:
        """A state for ``batch`` new sequences sharing this one's tables."""
        other = copy.copy(self)
        device = self.last.device
        other.last = torch.full((batch,), _START, dtype=torch.long, device=device)
        other.pos = torch.full((batch,), -1, dtype=torch.long, device=device)
        other.sig = torch.zeros(batch, dtype=torch.long, device=device)
        other.bars = torch.zeros(batch, dtype=torch.long, device=device)
        other.tracks = torch.zeros(batch, dtype=torch.long, device=device)
        other.filled = torch.zeros(batch, dtype=torch.bool, device=device)
        other.at_track = torch.full((batch,), -1, dtype=torch.long, device=device)
        other.at_pitch = torch.full((batch,), -1, dtype=torch.long, device=device)
        return other

    def mask(self) -> torch.Tensor:
        """(B, V) boolean mask of the legal next tokens."""
        mask = self.allowed[self.last] & self.positions[self.pos + 1, self.sig]
        if self.infill_id >= 0:
            mask = mask & ~(self.filled[:, None] & self.fills)
        if self.tracks_ok is None:
            return mask
        mask = mask & self.track_above[self.at_track + 1] & self.pitch_above[self.at_pitch + 1]
        return mask & self.tracks_ok[self.tracks.clamp(max=len(self.tracks_ok) - 1),
                                     (self.bars == 0).long()]  # fmt: skip
