"""Voice leading of part-writing: leaps, parallel fifths and octaves, crossings, dissonances
and ranges.

A piece is read as voices (its tracks, highest first as scored: Soprano, Alto, Tenor,
Bass), sampled at every onset of any voice (the sonorities). Between two sonorities a voice
moves if its pitch changes; a pair of voices moves in parallel fifths (octaves) when both
move in the same direction and the interval between them is a fifth (an octave or unison,
modulo the octave) at both. Two voices sounding together are dissonant at a second, a
tritone or a seventh (modulo the octave). ``around`` restricts the counts to the moves that
cross given times (the joins of an infilled span).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from aurl.tokens.tracks import DISSONANT, SATB_RANGES

LEAP = 7  # a melodic move of more than a fifth is a leap


@dataclass(frozen=True)
class VoiceLeading:
    """Counts over a piece (or over the moves across some joins).

    Attributes:
        moves: Melodic moves (a voice changes pitch between two sonorities), all voices.
        leaps: Of them, more than a fifth.
        pair_moves: Moves of a pair of voices where both move.
        parallels: Of them, parallel fifths or octaves.
        sonorities: Pairs of voices sounding together at a sonority.
        crossings: Of them, the higher-scored voice below the lower one.
        dissonant: Of them, a second, tritone or seventh apart.
        places: Voices at sonorities (voices times sonorities), and ``rests`` of them where
            the voice is silent.
        notes: Notes of voices with a usual range (SATB names), and ``out_of_range`` of them
            outside it.
    """

    moves: int = 0
    leaps: int = 0
    pair_moves: int = 0
    parallels: int = 0
    sonorities: int = 0
    crossings: int = 0
    dissonant: int = 0
    places: int = 0
    rests: int = 0
    notes: int = 0
    out_of_range: int = 0

    def __add__(self, other: VoiceLeading) -> VoiceLeading:
        return VoiceLeading(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, ...]:
        return (self.moves, self.leaps, self.pair_moves, self.parallels, self.sonorities,
                self.crossings, self.dissonant, self.places, self.rests, self.notes,
                self.out_of_range)  # fmt: skip

    def rates(self) -> dict[str, float]:
        """Leaps per move, parallels per pair move, crossings and dissonances per sounding
        pair, rests per voice at a sonority, notes out of range per note (0 where nothing
        was counted)."""
        share = lambda a, b: round(a / b, 4) if b else 0.0  # noqa: E731
        return {"leaps": share(self.leaps, self.moves),
                "parallels": share(self.parallels, self.pair_moves),
                "crossings": share(self.crossings, self.sonorities),
                "dissonant": share(self.dissonant, self.sonorities),
                "rests": share(self.rests, self.places),
                "out_of_range": share(self.out_of_range, self.notes)}  # fmt: skip


def sonorities(score: symusic.Score, tracks: list[int] | None = None) -> tuple[np.ndarray,
                                                                              np.ndarray]:  # fmt: skip
    """``(times, pitch)``: every onset time of the chosen tracks (default: all pitched ones)
    and each track's sounding pitch there, shape (tracks, times), -1 where it rests (the
    highest pitch where a track sounds several)."""
    chosen = [i for i, t in enumerate(score.tracks) if not t.is_drum] if tracks is None else tracks
    arrays = [score.tracks[i].notes.numpy() for i in chosen]
    times = np.unique(np.concatenate([a["time"] for a in arrays])) if arrays else np.zeros(0)
    pitch = np.full((len(arrays), len(times)), -1, np.int64)
    for v, a in enumerate(arrays):
        order = np.argsort(a["pitch"], kind="stable")  # later (higher) pitches overwrite
        for start, dur, p in zip(a["time"][order], a["duration"][order], a["pitch"][order],
                                 strict=True):  # fmt: skip
            lo, hi = np.searchsorted(times, [start, start + max(int(dur), 1)])
            pitch[v, lo:hi] = p
    return times.astype(np.int64), pitch


def voice_leading(score: symusic.Score, tracks: list[int] | None = None,
                  around: np.ndarray | None = None) -> VoiceLeading:  # fmt: skip
    """The counts of a piece's voices (see the module docstring); with ``around`` (ticks),
    only the moves from a sonority before a time to the first one at or after it."""
    times, pitch = sonorities(score, tracks)
    if pitch.shape[1] < 2:
        return _ranges(score, tracks)
    a, b = pitch[:, :-1], pitch[:, 1:]
    step = np.ones(a.shape[1], bool)
    if around is not None:
        step = np.zeros(a.shape[1], bool)
        for t in np.asarray(around):
            k = int(np.searchsorted(times, t)) - 1  # the move from sonority k to k + 1
            if 0 <= k < a.shape[1]:
                step[k] = True
    sounding = (a >= 0) & (b >= 0)
    moved = sounding & (a != b) & step
    leaps = moved & (np.abs(b - a) > LEAP)
    pair_moves = parallels = crossings = dissonant = pairs = 0
    n = len(pitch)
    for i in range(n):
        for j in range(i + 1, n):
            both = moved[i] & moved[j] & (np.sign(b[i] - a[i]) == np.sign(b[j] - a[j]))
            before, after = (a[i] - a[j]) % 12, (b[i] - b[j]) % 12
            perfect = ((before == 7) & (after == 7)) | ((before == 0) & (after == 0))
            pair_moves += int((moved[i] & moved[j]).sum())
            parallels += int((both & perfect).sum())
            together = (pitch[i] >= 0) & (pitch[j] >= 0)
            if around is not None:
                together = together & np.append(step, False)
            pairs += int(together.sum())
            crossings += int((together & (pitch[i] < pitch[j])).sum())
            apart = np.abs(pitch[i] - pitch[j]) % 12
            dissonant += int((together & np.isin(apart, DISSONANT)).sum())
    ranges = _ranges(score, tracks) if around is None else VoiceLeading()
    at = pitch if around is None else pitch[:, np.append(step, False)]
    return VoiceLeading(int(moved.sum()), int(leaps.sum()), pair_moves, parallels, pairs,
                        crossings, dissonant, at.size, int((at < 0).sum()), ranges.notes,
                        ranges.out_of_range)  # fmt: skip


def _ranges(score: symusic.Score, tracks: list[int] | None) -> VoiceLeading:
    chosen = range(len(score.tracks)) if tracks is None else tracks
    notes = out = 0
    for i in chosen:
        track = score.tracks[i]
        name = track.name.split()[0].capitalize() if track.name else ""
        if name not in SATB_RANGES:
            continue
        lo, hi = SATB_RANGES[name]
        pitch = track.notes.numpy()["pitch"]
        notes += len(pitch)
        out += int(((pitch < lo) | (pitch > hi)).sum())
    return VoiceLeading(notes=notes, out_of_range=out)


def satb_tracks(score: symusic.Score) -> list[int] | None:
    """The indices of the tracks named Soprano, Alto, Tenor and Bass, in that order (None
    unless all four are there)."""
    names = [t.name.split()[0].capitalize() if t.name else "" for t in score.tracks]
    found = [names.index(v) for v in SATB_RANGES if v in names]
    return found if len(found) == 4 else None
