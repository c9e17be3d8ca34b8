"""Steering: logit biases that pull sampling towards the controls a row asked for and, in
an infilling pass, towards smooth voice leading.

The controls are learned tendencies; steering adds to the model's logits where a request is
a fact the sampler can see coming:

- **Harmony**: every Pitch whose pitch class is outside the bar's requested chord (or, in a
  bar without one, outside the requested key's scale) loses ``strength * HARMONY`` nats.
- **Key**: every Pitch gains ``strength * TONAL * w`` nats, ``w`` being its pitch class's
  weight in the requested key's profile (the one the key analysis matches), scaled so the
  tonic has 1 (the dominant 0.84 in major, chromatic notes about -0.5): among the pitches a
  chord allows, those that state the key (tonic, dominant) are favoured.
- **Register**: the Pitch logits are tilted (``-e * strength * REGISTER`` nats per octave)
  by how far ``e`` (in bin widths) the bar's notes at earlier positions (or, at its first,
  the last bar's notes) lie from the middle of the requested register bin.
- **Polyphony**: at a position that holds k notes, moving on while k is below the requested
  bin's middle, or adding a note that takes k past it, loses ``strength * POLYPHONY`` nats
  per note of the difference.
- **Density**: the next onset is pulled towards where the bar's notes so far would be on
  schedule for its requested density bin: moving on too soon or too late, ending a bar short
  of notes, or adding a note that puts the bar ahead loses ``strength * DENSITY`` nats per
  bin width it misses by (see :func:`density_bias`).

These four apply to new music (a first pass). A second, infilling pass (after ``Infill``)
holds its controls already and is steered in its voice leading instead:

- **Voices**: a pitch outside the usual range of the track's voice (Soprano, Alto, Tenor,
  Bass) loses ``strength * RANGE`` nats per semitone outside, and a move of more than a
  fifth from the track's last pitch in the pass ``strength * LEAP`` per semitone past it,
  and one that moves in parallel fifths or octaves with a voice already written at this
  position, or with a track the pass keeps (a melody being harmonized), ``strength *
  PARALLEL``; a pitch above a higher voice's or below a lower one's ``strength * CROSS`` per
  semitone past it; a pitch a second, tritone or seventh from a sung voice sounding there
  ``strength * DISSONANCE`` per voice; and leaving a sung voice the pass writes silent
  ``strength * SILENT`` per voice.
- **Joins**: in the last bar of a gap before kept music, a move of more than a fifth into
  the track's first pitch after the gap loses ``strength * JOIN * LEAP`` per semitone past
  it, and one in parallel fifths or octaves with another track's move into the music
  ``strength * JOIN * PARALLEL``.

A strength of 0 leaves the logits as they are. Drum tracks are left alone but for density
and polyphony.
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.analysis.chords import template_matrix
from aurl.analysis.key import DEFAULT_PROFILE, profile_matrix
from aurl.tokens.mask import bar_lengths
from aurl.tokens.tracks import DISSONANT, SATB_RANGES
from aurl.tokens.vocab import (
    DENSITY_EDGES,
    EOS,
    POLYPHONY_EDGES,
    REGISTER_EDGES,
    VOICE_NAMES,
    TokenType,
    Vocabulary,
)

T = TokenType
HARMONY = 2.0  # nats a pitch outside the chord or key loses at strength 1
TONAL = 0.5  # nats the requested key's tonic gains at strength 1 (other degrees by weight)
DENSITY = 2.0  # nats per bin width missed at strength 1
REGISTER = 2.0  # nats per octave of tilt per bin width missed at strength 1
POLYPHONY = 1.0  # nats per note of a chord too thin or too thick at strength 1
RANGE = 1.0  # nats per semitone outside a sung voice's usual range at strength 1
LEAP = 0.5  # nats per semitone a voice's move goes past a fifth at strength 1
PARALLEL = 4.0  # nats a parallel fifth or octave with another voice loses at strength 1
CROSS = 1.0  # nats per semitone a voice crosses the one above or below it at strength 1
JOIN = 2.0  # how much more leaps and parallels into the music after a gap count
SILENT = 2.0  # nats per voice of a second pass left silent at strength 1
DISSONANCE = 1.0  # nats per voice a pitch makes a second, tritone or seventh with
TOP_RATE = DENSITY_EDGES[-1] + 1.0  # notes per quarter aimed at in the open top bin
# the scales of the keys: major, and minor with its raised seventh as well as the natural one
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10, 11))


def check_strength(strength: float) -> float:
    """``strength`` as a float.

    Raises:
        ValueError: a strength below 0 (or not a number).
    """
    if not float(strength) >= 0:
        raise ValueError(f"steering strength must be 0 or more, not {strength}")
    return float(strength)


class Tables:
    """What steering reads per id, made once per vocabulary.

    Attributes:
        pitch_class, pitch: pitch class and pitch of every Pitch id (-1 for other ids), (V,).
        chord_pcs: pitch classes of every Chord value, (12 * qualities, 12).
        key_pcs: pitch classes of every Key value's scale, (24, 12).
        key_weight: weight of every Pitch id's pitch class in every Key value's profile, tonic
            1 (0 for other ids), (24, V).
        place: Position value of every Position id, -2 for Bar, -1 for other ids, (V,).
        adds: whether an id adds a note at the present position (Pitch, Track), (V,).
        bar_len: bar length in steps of every GrammarState ``sig`` number (0: unknown, taken
            as four quarters).
        rate, width: density bins' target notes per quarter and width, per Density value.
        reg_mid, reg_width: register bins' middle and width (MIDI pitch), per Register value
            (the open end bins as wide as their neighbours).
        poly_mid: polyphony bins' middle (notes struck together), per Polyphony value.
        ranges: lowest and highest usual pitch of every Voice value (+-inf for voices
            without one), (voices + 1, 2), the last row for no voice.
    """

    def __init__(self, vocab: Vocabulary, device: torch.device | str = "cpu"):
        types, values = vocab.types, vocab.values
        pitch = types == T.PITCH
        self.pitch_class = torch.as_tensor(np.where(pitch, values % 12, -1), device=device)
        self.pitch = torch.as_tensor(np.where(pitch, values, -1), device=device)
        templates = template_matrix() > 0
        self.chord_pcs = torch.as_tensor(templates, device=device)
        key_pcs = np.zeros((24, 12), bool)
        for key in range(24):
            key_pcs[key, [(key + step) % 12 for step in SCALES[key // 12]]] = True
        self.key_pcs = torch.as_tensor(key_pcs, device=device)
        weight = profile_matrix(DEFAULT_PROFILE)
        weight = weight / weight.max(1, keepdims=True)
        weight = np.where(pitch, weight[:, np.where(pitch, values % 12, 0)], 0.0)
        self.key_weight = torch.as_tensor(weight, dtype=torch.float32, device=device)
        place = np.where(types == T.POSITION, values, -1)
        self.place = torch.as_tensor(np.where(types == T.BAR, -2, place), device=device)
        self.adds = torch.as_tensor((types == T.PITCH) | (types == T.TRACK), device=device)
        self.track = torch.as_tensor(np.where(types == T.TRACK, values, -1), device=device)
        ends = (types == T.BAR) | (np.arange(len(types)) == EOS)
        self.ends = torch.as_tensor(ends, device=device)
        lengths = bar_lengths(vocab)
        quarter = vocab.config.steps_per_quarter
        self.bar_len = torch.tensor([4 * quarter, *lengths], device=device)
        self.quarter = quarter
        edges = np.array([0.0, *DENSITY_EDGES, TOP_RATE + (TOP_RATE - DENSITY_EDGES[-1])])
        self.rate = torch.as_tensor((edges[:-1] + edges[1:]) / 2, device=device)
        self.width = torch.as_tensor(np.diff(edges), device=device)
        edges = np.array([2 * REGISTER_EDGES[0] - REGISTER_EDGES[1], *REGISTER_EDGES,
                          2 * REGISTER_EDGES[-1] - REGISTER_EDGES[-2]], np.float32)  # fmt: skip
        self.reg_mid = torch.as_tensor((edges[:-1] + edges[1:]) / 2, device=device)
        self.reg_width = torch.as_tensor(np.diff(edges), device=device)
        edges = np.array([0.5, *POLYPHONY_EDGES, POLYPHONY_EDGES[-1] + 2], np.float32)
        self.poly_mid = torch.as_tensor((edges[:-1] + edges[1:]) / 2, device=device)
        ranges = [SATB_RANGES.get(name, (-np.inf, np.inf)) for name in VOICE_NAMES]
        self.ranges = torch.tensor([*ranges, (-np.inf, np.inf)], device=device)
        # voices from the highest down (-1: a voice with no place, or none; index -1 too)
        ranks = [list(SATB_RANGES).index(n) if n in SATB_RANGES else -1 for n in VOICE_NAMES]
        self.rank = torch.tensor([*ranks, -1], device=device)


def harmony_bias(tables: Tables, wanted: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """(B, V) bias: ``-strength * HARMONY`` (B,) on Pitch ids whose pitch class is not
    ``wanted`` (B, 12), 0 elsewhere."""
    pc = tables.pitch_class
    outside = (pc[None] >= 0) & ~wanted.gather(1, pc.clamp(min=0)[None].expand(len(wanted), -1))
    return torch.where(outside, -HARMONY * strength[:, None], 0.0)


def tonal_bias(tables: Tables, key: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """(B, V) bias on the Pitch ids of rows asking Key value ``key`` (B,; -1: none):
    ``strength * TONAL`` times the pitch class's weight in the key (tonic 1)."""
    weight = tables.key_weight[key.clamp(min=0)]  # (B, V)
    return torch.where((key >= 0)[:, None], TONAL * strength[:, None] * weight, 0.0)


def density_bias(tables: Tables, density: torch.Tensor, notes: torch.Tensor, pos: torch.Tensor,
                 sig: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on what comes next in a bar, for rows asking Density value ``density`` (B,;
    -1: none) with ``notes`` started in the bar so far, at position ``pos`` (-1: none yet) of
    a bar of GrammarState length number ``sig``, steered with ``strength`` (B,).

    N being the notes the bin's middle wants in a bar of L steps, the next onset is best at
    ``v* = L * notes / N``: moving to a position v loses ``|N * v / L - notes|`` (too soon or
    too late), ending the bar loses its shortfall ``N - notes``, and one more note here (a
    Track or a Pitch) loses the surplus it makes, ``notes + 1 - N * (pos + 1) / L``; each in
    bin widths (the bin's width in notes), times ``strength * DENSITY``, at most 4 times
    that."""
    length = tables.bar_len[sig].float()  # (B,)
    quarters = length / tables.quarter
    d = density.clamp(min=0)
    want, width = tables.rate[d] * quarters, tables.width[d] * quarters
    have = notes.float()[:, None]
    place = tables.place.float()[None]
    at = (want[:, None] / length[:, None]) * place  # what moving to each position wants
    miss = torch.where(place == -2, (want[:, None] - have).clamp(min=0), (at - have).abs())
    here = (have + 1 - want[:, None] * (pos.float()[:, None] + 1) / length[:, None]).clamp(min=0)
    miss = torch.where(tables.adds[None], here, torch.where(place != -1, miss, 0.0))
    scale = (DENSITY * strength / width)[:, None]
    bias = -(miss * scale).clamp(max=4 * DENSITY * strength[:, None])
    return torch.where((density >= 0)[:, None], bias, 0.0)


def register_bias(tables: Tables, register: torch.Tensor, mean: torch.Tensor,
                  strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) tilt of the Pitch logits for rows asking Register value ``register`` (B,; -1:
    none) whose notes so far have mean pitch ``mean`` (NaN: none yet): ``-e * strength *
    REGISTER * (pitch - mean) / 12`` with ``e`` the mean's distance from the bin's middle in
    bin widths (at most 2), so pitches near the mean keep their logits."""
    r = register.clamp(min=0)
    e = ((mean - tables.reg_mid[r]) / tables.reg_width[r]).clamp(-2, 2)
    on = (register >= 0) & ~mean.isnan()
    tilt = torch.where(on, -e * strength * REGISTER / 12, 0.0)
    pitch = tables.pitch.float()[None]
    away = (pitch - mean.nan_to_num()[:, None]).clamp(-12, 12)
    return torch.where(tables.pitch[None] >= 0, tilt[:, None] * away, 0.0)


def voice_bias(tables: Tables, voice: torch.Tensor, last: torch.Tensor,
               strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on the Pitch ids of rows whose present track sings Voice value ``voice``
    (B,; -1: none) and last sounded ``last`` (NaN: not yet): ``-strength * RANGE`` per
    semitone outside the voice's range, ``-strength * LEAP`` per semitone of a move past a
    fifth, each at most 12 semitones' worth."""
    lo, hi = tables.ranges[voice].unbind(1)  # voice -1 takes the last row: no range
    pitch = tables.pitch.float()[None]
    outside = (lo[:, None] - pitch).clamp(min=0) + (pitch - hi[:, None]).clamp(min=0)
    leap = ((pitch - last[:, None]).abs() - 7).clamp(min=0).nan_to_num(0.0)
    miss = RANGE * outside.clamp(max=12) + LEAP * leap.clamp(max=12)
    return torch.where(tables.pitch[None] >= 0, -strength[:, None] * miss, 0.0)


def parallel_bias(tables: Tables, before: torch.Tensor, last: torch.Tensor, here: torch.Tensor,
                  track: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on the Pitch ids that would move the present ``track`` (B,) in parallel
    fifths or octaves (or unisons) with another track that moved at this position: per
    track (B, N) its pitch ``before`` this position and its ``last`` one, and whether it
    sounded a note ``here``; ``-strength * PARALLEL`` where any pair would."""
    rows = torch.arange(len(track), device=track.device)
    mine = before[rows, track]  # the present track's pitch before this position (B,)
    x = tables.pitch.float()[None, None]  # (1, 1, V)
    others = here & (last != before) & ~before.isnan()
    others[rows, track] = False
    step = torch.sign(last - before)[:, :, None]  # (B, N, 1)
    same_way = step == torch.sign(x - mine[:, None, None])
    perfect = _perfect_twice((before - mine[:, None])[:, :, None], last[:, :, None] - x)
    parallel = others[:, :, None] & same_way & (x != mine[:, None, None]) & perfect
    hit = parallel.any(1) & (tables.pitch[None] >= 0) & ~mine.isnan()[:, None]
    return torch.where(hit, -PARALLEL * strength[:, None], 0.0)


def _perfect_twice(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """Where another voice lies ``first`` semitones from this one, then ``then``, and both
    make a unison or octave (compound or not), or both a fifth on the same side."""
    a, b = torch.remainder(first.abs(), 12), torch.remainder(then.abs(), 12)
    fifths = (a == 7) & (b == 7) & (torch.sign(first) == torch.sign(then))
    return ((a == 0) & (b == 0)) | fifths


def crossing_bias(tables: Tables, voice: torch.Tensor, last: torch.Tensor, track: torch.Tensor,
                  strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on the Pitch ids that would put the present ``track`` (B,) above a
    higher voice's ``last`` pitch or below a lower one's (per track (B, N): its Voice value
    ``voice`` and what it sounds, NaN: nothing): ``-strength * CROSS`` per semitone past it,
    at most 12 semitones' worth."""
    rows = torch.arange(len(track), device=track.device)
    rank = tables.rank[voice]  # (B, N), -1: no place among the voices
    mine = rank[rows, track]
    x = tables.pitch.float()[None, None]  # (1, 1, V)
    other = (rank >= 0) & (mine[:, None] >= 0) & (rank != mine[:, None]) & ~last.isnan()
    other[rows, track] = False
    above = (other & (rank < mine[:, None]))[:, :, None]
    below = (other & (rank > mine[:, None]))[:, :, None]
    ref = last.nan_to_num()[:, :, None]
    high = torch.where(above, (x - ref).clamp(min=0), 0.0)
    low = torch.where(below, (ref - x).clamp(min=0), 0.0)
    miss = (high + low).sum(1).clamp(max=12)
    return torch.where(tables.pitch[None] >= 0, -CROSS * strength[:, None] * miss, 0.0)


def join_bias(tables: Tables, after: torch.Tensor, last: torch.Tensor, track: torch.Tensor,
              strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on the Pitch ids of the present ``track`` (B,) in the last bar of a gap,
    towards the kept music after it: per track (B, N) what it sounds as that music begins
    (``after``, NaN: nothing) and what it sounds now (``last``). A move of more than a fifth
    into the track's next pitch loses ``strength * JOIN * LEAP`` per semitone past it, and
    one in parallel fifths or octaves with another track's move into the music ``strength *
    JOIN * PARALLEL``; nothing where the track's next pitch is not known. Any note of the bar
    may be the last one before the music, so all are pulled."""
    rows = torch.arange(len(track), device=track.device)
    goal = after[rows, track][:, None]  # (B, 1)
    x = tables.pitch.float()[None]  # (1, V)
    leap = LEAP * ((goal - x).abs() - 7).clamp(0, 12)
    moving = ~after.isnan() & ~last.isnan() & (after != last)
    moving[rows, track] = False
    same_way = torch.sign(after - last)[:, :, None] == torch.sign(goal - x)[:, None]
    perfect = _perfect_twice(last[:, :, None] - x[:, None], after[:, :, None] - goal[:, None])
    parallel = moving[:, :, None] & same_way & (x != goal)[:, None] & perfect
    miss = JOIN * (leap + PARALLEL * parallel.any(1))
    known = (tables.pitch[None] >= 0) & ~goal.isnan()
    return torch.where(known, -strength[:, None] * miss, 0.0)


def dissonance_bias(tables: Tables, sounding: torch.Tensor, sung: torch.Tensor,
                    track: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias on the Pitch ids of the present ``track`` (B,), if it is a ``sung`` voice
    (B, N): ``-strength * DISSONANCE`` per other sung voice ``sounding`` (B, N; NaN: silent)
    that the pitch would make a second, a tritone or a seventh with."""
    rows = torch.arange(len(track), device=track.device)
    others = sung & ~sounding.isnan() & sung[rows, track][:, None]
    others[rows, track] = False
    apart = torch.remainder(
        (tables.pitch[None, None] - sounding.nan_to_num()[:, :, None]).abs(), 12
    )
    clash = others[:, :, None] & torch.isin(apart, torch.tensor(DISSONANT, device=apart.device))
    miss = clash.sum(1).float()
    return torch.where(tables.pitch[None] >= 0, -DISSONANCE * strength[:, None] * miss, 0.0)


def silence_bias(tables: Tables, wanted: torch.Tensor, end: torch.Tensor, at: torch.Tensor,
                 length: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias that keeps the voices a pass writes (``wanted``, (B, N)) sounding: per
    voice left silent, ``-strength * SILENT`` on skipping it at the present position ``at``
    (B,) where its last note has ended (``end``, (B, N), steps from the bar's start; a Track
    past it: tracks come in order), on moving on to a position before which its note ends
    (Position), and on ending the bar (of ``length`` steps) so (Bar, EOS)."""
    silent = wanted & (end <= at[:, None]) & (at[:, None] >= 0)
    skipped = (silent.cumsum(1) - silent.long()).float()  # silent tracks before each track
    steps = torch.arange(tables.place.max() + 1, device=end.device)
    early = (wanted[:, :, None] & (end[:, :, None] < steps)).sum(1).float()  # (B, steps)
    last = (wanted & (end < length[:, None])).sum(1).float()
    track, place = tables.track.clamp(min=0), tables.place.clamp(min=0)
    miss = torch.where(tables.track[None] >= 0, skipped[:, track.clamp(max=end.shape[1] - 1)],
                       torch.where(tables.place[None] >= 0, early[:, place], 0.0))  # fmt: skip
    miss = torch.where(tables.ends[None], last[:, None], miss)
    return -SILENT * strength[:, None] * miss


def polyphony_bias(tables: Tables, polyphony: torch.Tensor, here: torch.Tensor,
                   strength: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B, V) bias for rows asking Polyphony value ``polyphony`` (B,; -1: none) with ``here``
    notes at the present position: moving on (Position, Bar) loses ``strength * POLYPHONY``
    per note short of the bin's middle, one more note (Track, Pitch) as much per note past
    it; nothing before the position's first note."""
    mid = tables.poly_mid[polyphony.clamp(min=0)]
    k = here.float()
    short, over = (mid - k).clamp(min=0), (k + 1 - mid).clamp(min=0)
    moves = (tables.place[None] != -1) & ~tables.adds[None]
    miss = torch.where(tables.adds[None], over[:, None], torch.where(moves, short[:, None], 0.0))
    on = (polyphony >= 0) & (here > 0)
    return torch.where(on[:, None], -POLYPHONY * strength[:, None] * miss, 0.0)
