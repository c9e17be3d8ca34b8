"""Generation under controls: the prompt a request opens with, and a per-step mask that
writes the requested bar controls and holds the hard facts.

A :class:`ControlPlan` is a request in token values (see
:mod:`aurl.generate.control_names` for reading one from names). Piece controls go into the
prompt (:func:`plan_prompt`): Style, Key and the track declarations. During sampling,
:class:`ControlState` forces each bar's requested Density, Polyphony, Register and Chord
right after its Bar (and TimeSig), forbids the control types not requested (the model was
trained with each left out at random, so it knows sequences without them), allows only the
requested time signature, and forces the requested tempo at the piece's first position and
no other tempo after it. With a steering strength above 0, it also biases the logits
towards each bar's requested chord (or key) and density (:mod:`aurl.generate.steer`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from aurl.generate import filters, steer
from aurl.generate.bar_notes import Bars
from aurl.generate.kept_voices import KeptVoices
from aurl.tokens import BOS, TokenType, Vocabulary
from aurl.tokens.grammar import _HEAD_TRACK, BAR_CONTROLS, PIECE_CONTROLS
from aurl.tokens.mask import GrammarState, RowTensors

T = TokenType
PLAN_BARS = 512  # bars a plan is spelled out for (longer pieces repeat it)
_SLOT_AFTER = {T.BAR: 0, T.TIMESIG: 0, T.DENSITY: 1, T.POLYPHONY: 2, T.REGISTER: 3}


@dataclass(frozen=True)
class ControlPlan:
    """What one piece is asked to be, in token values (-1 or empty: not asked).

    Attributes:
        style: Style value; -1 leaves the style to the model (no Style token).
        key: Key value (0-11 major, 12-23 minor).
        tracks: ``(program, voice)`` of every track to declare (voice -1: none); empty
            leaves the instruments to the model.
        tempo: Tempo bin of the piece.
        time_signature: TimeSig index of every bar.
        bars: Per bar control type, one value per bar (cycled when shorter than the piece).
        fill_tracks: When filling tracks, the only tracks the second pass may write.
        fills: Whether Fill and Infill may be drawn (off: an ordinary piece, never an
            infilling layout; infilling prompts hold their marks and Infill already).
    """

    style: int = -1
    key: int = -1
    tracks: tuple[tuple[int, int], ...] = ()
    tempo: int = -1
    time_signature: int = -1
    bars: dict[TokenType, tuple[int, ...]] = field(default_factory=dict)
    fill_tracks: tuple[int, ...] = ()
    fills: bool = False


def plan_prompt(plan: ControlPlan, vocab: Vocabulary) -> np.ndarray:
    """BOS, the piece's Style and Key, and its track declarations closed by the first Bar
    (so that no other track can be declared), as ids."""
    ids = [BOS]
    for kind, value in ((T.STYLE, plan.style), (T.KEY, plan.key)):
        if value >= 0:
            ids.append(vocab.token(kind, value))
    for k, (program, voice) in enumerate(plan.tracks):
        ids += [vocab.token(T.TRACK, k), vocab.token(T.PROGRAM, program)]
        if voice >= 0:
            ids.append(vocab.token(T.VOICE, voice))
    if plan.tracks:
        ids.append(int(vocab.offsets[T.BAR]))
    return np.array(ids, np.int64)


def continue_prompt(plan: ControlPlan, prompt: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """A prompt (from BOS) with the plan's Style and Key in place of its own; it keeps its
    track declarations.

    Raises:
        ValueError: the plan declares tracks (a prompt keeps its instruments).
    """
    if plan.tracks:
        raise ValueError("a prompt keeps its own instruments: leave out instruments and voices "
                         "when continuing one")  # fmt: skip
    prompt = np.asarray(prompt, np.int64)
    own = np.isin(vocab.types[prompt], [int(T.STYLE), int(T.KEY)])
    head = plan_prompt(ControlPlan(style=plan.style, key=plan.key), vocab)
    rest = prompt[~own]
    return np.concatenate([head, rest[1:] if len(rest) and rest[0] == BOS else rest])


class ControlState(RowTensors):
    """The control requests of a batch of rows, as tensors, with the mask they imply.

    Rows added without a plan are left alone (nothing forced, nothing forbidden).

    Args:
        vocab: the vocabulary (with controls).
        bars: the most bars a plan spells out (longer pieces cycle their plan).
        device: where the tensors live.
    """

    _ROWS = (
        "forced",
        "period",
        "given",
        "sig",
        "tempo",
        "planned",
        "tempo_placed",
        "fill_ok",
        "fills",
        "key",
        "strength",
    )

    def __init__(self, vocab: Vocabulary, bars: int = PLAN_BARS,
                 device: torch.device | str = "cpu"):  # fmt: skip
        self.vocab, self.bars = vocab, max(bars, 1)
        self.tables = steer.Tables(vocab, device)
        types = torch.as_tensor(vocab.types, device=device)
        self.types = types
        kinds = (*PIECE_CONTROLS, *BAR_CONTROLS)
        # column of every id's control type in ``given`` (-1: not a control)
        column = torch.full_like(types, -1)
        for c, kind in enumerate(kinds):
            column[types == kind] = c
        self.column = column
        self.slot_of = torch.full((_HEAD_TRACK + 1,), 4, dtype=torch.long, device=device)
        for kind, slot in _SLOT_AFTER.items():
            self.slot_of[int(kind)] = slot
        self.is_sig, self.is_tempo = types == T.TIMESIG, types == T.TEMPO
        z = lambda *shape, fill=0: torch.full(shape, fill, dtype=torch.long, device=device)  # noqa: E731
        self.forced = z(0, self.bars, 4, fill=-1)  # forced id per bar and bar-control slot
        self.period = z(0, fill=1)  # bars after which a row's plan repeats
        self.given = torch.zeros(0, len(kinds), dtype=torch.bool, device=device)
        self.sig, self.tempo = z(0, fill=-1), z(0, fill=-1)  # allowed TimeSig, forced Tempo
        self.planned = torch.zeros(0, dtype=torch.bool, device=device)
        self.tempo_placed = torch.zeros(0, dtype=torch.bool, device=device)
        # fill_ok[b, k]: the second pass of row b may write track k (all when not filling)
        self.is_track = types == T.TRACK
        self.track_of = torch.as_tensor(vocab.values, device=device).clamp(min=0)
        self.n_tracks = max(vocab.counts[T.TRACK], 1)
        self.fill_ok = torch.ones(0, self.n_tracks, dtype=torch.bool, device=device)
        self.is_fill = (types == T.FILL) | (types == T.INFILL)
        self.fills = torch.zeros(0, dtype=torch.bool, device=device)
        # for steering: its strength, the requested Key value, what the bar holds so far
        self.strength, self.key = torch.zeros(0, device=device), z(0, fill=-1)
        self.bar_notes = Bars(vocab, 0, device)
        self.kept = KeptVoices(vocab, 0, device)  # the kept tracks of a track-filling pass
        self._cached: tuple[torch.Tensor, torch.Tensor, bool, bool] | None = None  # _fixed

    def rows(self, plans: list[ControlPlan | None],
             steering: list[float] | None = None) -> ControlState:  # fmt: skip
        """A state of the same tables for new rows with ``plans``, each steered with its
        ``steering`` strength (default 0: none; see :mod:`aurl.generate.steer`)."""
        other = copy.copy(self)
        other._cached = None
        device = self.types.device
        n = len(plans)
        forced = torch.full((n, self.bars, 4), -1, dtype=torch.long)
        period = torch.ones(n, dtype=torch.long)
        given = torch.zeros(n, self.given.shape[1], dtype=torch.bool)
        sig, tempo = torch.full((n,), -1), torch.full((n,), -1)
        fill_ok = torch.ones(n, self.n_tracks, dtype=torch.bool)
        off = self.vocab.offsets
        for i, plan in enumerate(plans):
            if plan is None:
                continue
            given[i, 0], given[i, 1] = plan.style >= 0, plan.key >= 0
            for slot, kind in enumerate(BAR_CONTROLS):
                values = plan.bars.get(kind, ())
                if not values:
                    continue
                given[i, 2 + slot] = True
                cycle = np.resize(np.asarray(values, np.int64), self.bars)
                forced[i, :, slot] = torch.as_tensor(np.where(cycle >= 0, off[kind] + cycle, -1))
            lengths = [len(v) for v in plan.bars.values() if v]
            period[i] = int(np.lcm.reduce(lengths)) if lengths else 1
            sig[i] = off[T.TIMESIG] + plan.time_signature if plan.time_signature >= 0 else -1
            tempo[i] = off[T.TEMPO] + plan.tempo if plan.tempo >= 0 else -1
            if plan.fill_tracks:
                fill_ok[i] = False
                fill_ok[i, list(plan.fill_tracks)] = True
        other.forced, other.period, other.given = (forced.to(device), period.to(device),
                                                   given.to(device))  # fmt: skip
        other.sig, other.tempo = sig.to(device), tempo.to(device)
        other.planned = torch.tensor(
            [p is not None for p in plans], dtype=torch.bool, device=device
        )
        other.tempo_placed = torch.zeros(n, dtype=torch.bool, device=device)
        other.fill_ok = fill_ok.to(device)
        other.fills = torch.tensor([p is not None and p.fills for p in plans], dtype=torch.bool,
                                   device=device)  # fmt: skip
        other.key = torch.tensor([-1 if p is None else p.key for p in plans], dtype=torch.long,
                                 device=device)  # fmt: skip
        other.bar_notes = Bars(self.vocab, n, device)
        other.kept = KeptVoices(self.vocab, n, device)
        strength = [steer.check_strength(s) for s in steering or [0.0] * n]
        other.strength = torch.tensor(strength, device=device) * other.planned
        return other

    def update(self, tokens: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Note the tokens just taken (B,): whether each row's tempo has been placed, and for
        steering what its bar holds."""
        tempo = self.is_tempo[tokens]
        self.tempo_placed |= tempo if active is None else tempo & active
        if self._fixed()[3]:
            self.bar_notes.update(tokens, active)
        if self.vocab.has_infill:
            self.kept.update(tokens, active)

    def feed(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> None:
        """:meth:`update` with whole prompts (B, T), right-padded to ``lengths``."""
        if self.vocab.has_infill:
            self.kept.load(ids, lengths)
        for t in range(ids.shape[1]):
            self.update(ids[:, t], None if lengths is None else lengths > t)

    def apply(self, logits: torch.Tensor, state: GrammarState) -> torch.Tensor:
        """``logits`` (B, V) with the controls' mask: forced ids alone where one is due,
        types not asked for forbidden, the time signature and tempo held (in a second pass,
        each bar's TimeSig that of its marked bar); plus the steering bias of the rows
        steered (:meth:`_steering`)."""
        fixed, fixed_filling, any_bar, _ = self._fixed()
        allowed = fixed
        if self.vocab.has_infill:  # in a second pass, only the tracks asked for
            allowed = torch.where(state.filled[:, None], fixed_filling, fixed)
        forced = self._due(state) if any_bar else torch.full_like(self.tempo, -1)
        tempo_due = (state.last == T.POSITION) & (self.tempo >= 0) & ~self.tempo_placed
        forced = torch.where(tempo_due, self.tempo, forced)
        if self.vocab.has_infill:  # a second pass's bar opens with its marked bar's TimeSig
            forced = torch.where(self.kept.sig_due >= 0, self.kept.sig_due, forced)
        force = forced >= 0
        if bool(force.any()):  # rows without a plan are never forced (their tables are -1)
            rows = force.nonzero().flatten()
            allowed = allowed.clone()
            allowed[rows] = False
            allowed[rows, forced[rows]] = True
        logits = filters.apply_mask(logits, allowed)
        if self._fixed()[3]:
            logits = logits + self._steering(state)
        return logits

    def _steering(self, state: GrammarState) -> torch.Tensor:
        """(B, V) steering bias of every row towards its bar's chord (or key), its key's
        tonic and dominant, register, polyphony and density; in a second pass, towards
        smooth voice leading."""
        off, tables, notes = self.vocab.offsets, self.tables, self.bar_notes
        row = self._bar_plan(state)
        value = lambda slot, kind: torch.where(row[:, slot] >= 0, row[:, slot] - off[kind], -1)  # noqa: E731
        chord, density = value(3, T.CHORD), value(0, T.DENSITY)
        in_bar = state.bars > 0
        register = torch.where(in_bar, value(2, T.REGISTER), -1)
        polyphony = torch.where(in_bar, value(1, T.POLYPHONY), -1)
        rows = torch.arange(len(row), device=row.device)
        wanted = torch.where((chord >= 0)[:, None], tables.chord_pcs[chord.clamp(min=0)],
                             tables.key_pcs[self.key.clamp(min=0)])  # fmt: skip
        drum = (state.at_track >= 0) & notes.drum[rows, state.at_track.clamp(min=0)]
        leading = self._leading(state, drum) if bool(state.filled.any()) else 0.0
        strength = torch.where(state.filled, 0.0, self.strength)  # new music only
        tuned = torch.where(drum, 0.0, strength)
        on = (chord >= 0) | (self.key >= 0)
        bias = steer.harmony_bias(tables, wanted, torch.where(on, tuned, 0.0))
        bias = bias + steer.tonal_bias(tables, self.key, tuned)
        bias = bias + steer.register_bias(tables, register, notes.mean(), tuned)
        bias = bias + steer.polyphony_bias(tables, polyphony, notes.here_count, strength)
        density = torch.where(in_bar, density, -1)
        bias = bias + steer.density_bias(tables, density, notes.notes, state.pos, state.sig,
                                         strength)  # fmt: skip
        return bias + leading

    def _leading(self, state: GrammarState, drum: torch.Tensor) -> torch.Tensor:
        """(B, V) steering of the rows in a second pass towards smooth voice leading, with
        the voices it writes and the tracks it keeps (see :mod:`aurl.generate.steer`)."""
        tables, notes = self.tables, self.bar_notes
        rows = torch.arange(len(drum), device=drum.device)
        track = state.at_track.clamp(min=0)
        voice = torch.where(state.at_track >= 0, notes.voice[rows, track], -1)
        second = torch.where(state.filled & ~drum, self.strength, 0.0)
        leading = steer.voice_bias(tables, voice, notes.last[rows, track], second)
        kept = ~self.kept.now.isnan()  # what the kept tracks sound here
        before = torch.where(kept, self.kept.before, notes.before)
        last = torch.where(kept, self.kept.now, notes.last)
        here = torch.where(kept, self.kept.starts, notes.here)
        leading = leading + steer.parallel_bias(tables, before, last, here, track, second)
        leading = leading + steer.crossing_bias(tables, notes.voice, last, track, second)
        leading = leading + steer.join_bias(tables, self.kept.after, last, track, second)
        sung = tables.rank[notes.voice] >= 0
        leading = leading + steer.silence_bias(tables, sung & self.fill_ok, notes.end, notes.at,
                                               notes.length, second)  # fmt: skip
        held = notes.end > notes.at[:, None]  # written notes still sounding here
        sounding = torch.where(kept, self.kept.now, notes.last.masked_fill(~held, torch.nan))
        return leading + steer.dissonance_bias(tables, sounding, sung, track, second)

    def _fixed(self) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
        """What the rows' requests allow whatever the step, (B, V), outside and inside a
        second (track-filling) pass, whether any row asks for bar controls, and whether any
        is steered: made once per set of rows (every row operation clears it)."""
        if self._cached is not None:
            return self._cached
        arange = torch.arange(len(self.types), device=self.types.device)
        allowed = self.column < 0
        allowed = allowed | self.given.gather(1, self.column.clamp(min=0)[None].expand(
            len(self.given), -1))  # fmt: skip
        allowed = allowed & (~self.is_sig | (self.sig[:, None] < 0)
                             | (arange == self.sig[:, None]))  # fmt: skip
        allowed = allowed & ~((self.tempo >= 0)[:, None] & self.is_tempo)
        filling = allowed
        if self.vocab.has_infill:
            allowed = allowed & (~self.is_fill | self.fills[:, None])
            track_ok = self.fill_ok[:, self.track_of.clamp(max=self.n_tracks - 1)]
            filling = allowed & (~self.is_track | track_ok)
        free = ~self.planned[:, None]
        self._cached = (allowed | free, filling | free, bool((self.forced >= 0).any()),
                        bool((self.strength > 0).any()))  # fmt: skip
        return self._cached

    def select(self, index: torch.Tensor) -> None:
        super().select(index)
        self.bar_notes.select(index)
        self.kept.select(index)
        self._cached = None

    def extend(self, other: ControlState) -> None:
        super().extend(other)
        self.bar_notes.extend(other.bar_notes)
        self.kept.extend(other.kept)
        self._cached = None

    def put(self, rows: torch.Tensor, other: ControlState) -> None:
        super().put(rows, other)
        self.bar_notes.put(rows, other.bar_notes)
        self.kept.put(rows, other.kept)
        self._cached = None

    def _due(self, state: GrammarState) -> torch.Tensor:
        """The forced bar-control id due next in every row (-1 where none is)."""
        slot = self.slot_of[state.last]
        row = self._bar_plan(state)
        ok = (row >= 0) & (torch.arange(4, device=row.device) >= slot[:, None])
        first = torch.where(ok.any(1), ok.float().argmax(1), 0)
        return torch.where(ok.any(1), row.gather(1, first[:, None])[:, 0], -1)

    def _bar_plan(self, state: GrammarState) -> torch.Tensor:
        """The forced bar-control ids of every row's present bar, (B, 4) (-1: not asked)."""
        bar = ((state.bars - 1).clamp(min=0) % self.period).clamp(max=self.bars - 1)
        return self.forced[torch.arange(len(bar), device=bar.device), bar]
