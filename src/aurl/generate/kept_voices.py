"""What the kept tracks sound while a second pass writes the others, for steering its voice
leading (:mod:`aurl.generate.steer`).

When an infilling pass writes some tracks of its marked bars (``aurl infill --tracks``,
``aurl harmonize``), the other tracks' notes lie in the first pass. :class:`KeptVoices` reads
them once from each row's prompt (:func:`aurl.tokens.infill.kept_sounding`) and, as the
second pass reaches a position, gives every kept track's pitch there, its pitch just before
and whether it starts a note there, so that parallels and crossings with a kept melody can be
steered as those with a voice the pass wrote itself; and in a marked bar before kept music
(the end of a gap), what every track sounds as that music begins, so that the voices can be
steered into it.

It also knows each marked bar's time signature, which its bar in the second pass must open
with (``sig_due``, forced by :class:`~aurl.generate.controls.ControlState`): a pass bar of
another length would spill its notes into the bars after it.
"""

from __future__ import annotations

import torch

from aurl.tokens.infill import kept_sounding, marked_signatures
from aurl.tokens.mask import RowTensors
from aurl.tokens.vocab import TokenType, Vocabulary

T = TokenType


class KeptVoices(RowTensors):
    """Per row: the kept tracks' pitch at every step of every marked bar (``pitch``, (B, M,
    steps + 2, N), NaN where none sounds; see :func:`~aurl.tokens.infill.kept_sounding`) and
    their onsets (``onset``), the bars the pass repeats first (``repeated``), the bars the
    pass has opened (``opened``, -1 outside a pass); in the present bar of a pass, what each
    track sounds as the kept music after it begins (``after``, (B, N), NaN: none, or no kept
    music follows), and at its present position ``before``, ``now`` (B, N; NaN: not kept, or
    silent) and ``starts`` (B, N); the TimeSig id of each marked bar (``sigs``, (B, M), -1:
    none) and, right after a pass's Bar, the one due next (``sig_due``, (B,), else -1)."""

    _ROWS = ("pitch", "onset", "repeated", "opened", "after", "before", "now", "starts", "sigs",
             "sig_due")  # fmt: skip

    def __init__(self, vocab: Vocabulary, batch: int, device: torch.device | str = "cpu"):
        self.vocab = vocab
        self.types = torch.as_tensor(vocab.types, device=device)
        self.values = torch.as_tensor(vocab.values, device=device).clamp(min=0)
        self.n_tracks = max(vocab.counts[T.TRACK], 1)
        steps = vocab.max_bar_steps
        self.pitch = torch.full((batch, 0, steps + 2, self.n_tracks), float("nan"), device=device)
        self.onset = torch.zeros(batch, 0, steps, self.n_tracks, dtype=torch.bool, device=device)
        self.repeated = torch.zeros(batch, dtype=torch.long, device=device)
        self.opened = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.before = torch.full((batch, self.n_tracks), float("nan"), device=device)
        self.now, self.after = self.before.clone(), self.before.clone()
        self.starts = torch.zeros(batch, self.n_tracks, dtype=torch.bool, device=device)
        self.sigs = torch.full((batch, 0), -1, dtype=torch.long, device=device)
        self.sig_due = torch.full((batch,), -1, dtype=torch.long, device=device)

    def load(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """Read the kept notes from the rows' prompts (B, T), right-padded to ``lengths``."""
        rows = ids.cpu().numpy()
        sizes = [len(r) for r in rows] if lengths is None else lengths.tolist()
        found = [kept_sounding(r[:n], self.vocab, self.n_tracks)
                 for r, n in zip(rows, sizes, strict=True)]  # fmt: skip
        sigs = [marked_signatures(r[:n], self.vocab) for r, n in zip(rows, sizes, strict=True)]
        marked = max([len(p) for p, _, _ in found], default=0)
        if not marked:
            return
        device = self.pitch.device
        self._grow(marked)
        for i, (pitch, onset, repeated) in enumerate(found):
            self.pitch[i, : len(pitch)] = torch.as_tensor(pitch, dtype=torch.float32,
                                                          device=device)  # fmt: skip
            self.onset[i, : len(onset)] = torch.as_tensor(onset, device=device)
            self.repeated[i] = repeated
            self.sigs[i, : len(sigs[i])] = torch.as_tensor(sigs[i], device=device)

    def update(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Take one token per row (B,), only where ``active``."""
        if not self.pitch.shape[1]:  # no row has marked bars: nothing to follow
            return
        on = torch.ones_like(tokens, dtype=torch.bool) if active is None else active
        kind = self.types[tokens]
        self.opened = torch.where(on & (kind == T.INFILL), 0, self.opened)
        bar = on & (kind == T.BAR) & (self.opened >= 0)
        self.opened = self.opened + bar.long()
        self.sig_due = torch.where(on, -1, self.sig_due)
        place = on & (kind == T.POSITION) & (self.opened > 0)
        moved = bar | place
        if not bool(moved.any()):
            return
        nan = torch.full_like(self.now, float("nan"))
        marked = self.opened - 1 - self.repeated
        where = place & (marked >= 0) & (marked < self.pitch.shape[1])
        rows = torch.arange(len(tokens), device=tokens.device)
        m = marked.clamp(0, max(self.pitch.shape[1] - 1, 0))
        step = self.values[tokens].clamp(max=self.onset.shape[2] - 1)
        if self.pitch.shape[1]:
            before, now = self.pitch[rows, m, step], self.pitch[rows, m, step + 1]
            starts, after = self.onset[rows, m, step], self.pitch[rows, m, -1]
        else:
            before, now, starts, after = nan, nan, torch.zeros_like(self.starts), nan
        opens = bar & (marked >= 0) & (marked < self.pitch.shape[1])
        if self.sigs.shape[1]:
            self.sig_due = torch.where(opens, self.sigs[rows, m], self.sig_due)
        self.after = torch.where(opens[:, None], after, torch.where(bar[:, None], nan, self.after))
        self.before = torch.where(where[:, None], before, torch.where(moved[:, None], nan,
                                                                      self.before))  # fmt: skip
        self.now = torch.where(where[:, None], now, torch.where(moved[:, None], nan, self.now))
        self.starts = torch.where(where[:, None], starts, self.starts & ~moved[:, None])

    def _grow(self, marked: int) -> None:
        """Room for ``marked`` marked bars per row."""
        have = self.pitch.shape[1]
        if marked <= have:
            return
        b, _, s, n = self.pitch.shape
        pad = torch.full((b, marked - have, s, n), float("nan"), device=self.pitch.device)
        self.pitch = torch.cat([self.pitch, pad], 1)
        self.onset = torch.cat([self.onset, torch.zeros_like(pad[:, :, 2:], dtype=torch.bool)], 1)
        none = torch.full((b, marked - have), -1, dtype=torch.long, device=self.sigs.device)
        self.sigs = torch.cat([self.sigs, none], 1)

    def extend(self, other: KeptVoices) -> None:
        self._fit(other)
        super().extend(other)

    def put(self, rows: torch.Tensor, other: KeptVoices) -> None:
        self._fit(other)
        super().put(rows, other)

    def _fit(self, other: KeptVoices) -> None:
        marked = max(self.pitch.shape[1], other.pitch.shape[1])
        self._grow(marked)
        other._grow(marked)
