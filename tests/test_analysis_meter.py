"""Harmonic rhythm and non-chord tones: beats split in two or three, the half-bar tactus of
music in half notes, and passing notes, suspensions and anticipations found by their rules."""

from __future__ import annotations

import numpy as np

from aurl.analysis.chords import subdivide
from aurl.analysis.harmony import analyze_harmony, harmonic_beat
from aurl.analysis.nonchord import NEVER, NonChordParams, note_roles
from aurl.analysis.piece import make_piece

P = NonChordParams()


def test_simple_beats_split_in_two_and_compound_beats_in_three():
    assert subdivide(np.array([0, 12, 30, 48])).tolist() == [0, 6, 12, 18, 24, 30, 36, 42, 48]
    assert subdivide(np.array([0, 36])).tolist() == [0, 12, 24, 36]  # a dotted half
    assert subdivide(np.array([0, 24])).tolist() == [0, 12, 24]


def _chords(length: int, bars: int, beats_per_bar: int = 4):
    """C and G major triads alternating, each ``length`` steps long."""
    time, dur, pitch = [], [], []
    for i in range(bars * beats_per_bar * 12 // length):
        root = 48 if i % 2 == 0 else 55
        for step in (0, 4, 7, 12):
            time.append(i * length)
            dur.append(length)
            pitch.append(root + step)
    return make_piece(time, dur, pitch, beats_per_bar=beats_per_bar)


def test_music_in_half_notes_has_a_half_bar_tactus():
    halves, quarters = _chords(24, 4), _chords(12, 4)
    assert harmonic_beat(halves, 1.75) == 2
    assert harmonic_beat(quarters, 1.75) == 1
    waltz = _chords(24, 4, beats_per_bar=3)  # three beats to the bar: no half bar
    assert harmonic_beat(waltz, 1.75) == 1
    h = analyze_harmony(halves)
    assert h.tactus == 2
    assert h.chords.root[:8].tolist() == [0, 0, 7, 7, 0, 0, 7, 7]  # each chord holds 2 beats
    # with a one-beat pickup the half bars start on beat 2 of it: the pickup is covered too
    t, d, p = halves.time + 12, halves.duration, halves.pitch
    late = make_piece(np.r_[0, 0, 0, t], np.r_[12, 12, 12, d], np.r_[55, 59, 62, p], pickup=12)
    h = analyze_harmony(late)  # a G major pickup, then C C G G ...
    assert h.tactus == 2 and h.chords.root[0] == 7 and h.chords.root[1:5].tolist() == [0, 0, 7, 7]


def test_passing_notes_suspensions_and_anticipations():
    notes = [  # (time, duration, pitch): one voice per line, in quarter-note beats of 12 steps
        (0, 18, 60),
        (18, 6, 62),
        (24, 12, 64),  # D4: off the beat, by step in and out
        (0, 24, 65),
        (24, 12, 64),  # F4 held over beat 12 against G3, falls to E4 over C3
        (0, 12, 43),
        (12, 36, 48),
        (12, 36, 55),  # bass G2 then C3, and G3
        (36, 6, 74),
        (42, 6, 72),
        (48, 12, 72),  # C5 anticipated off the beat
    ]
    t, d, p = (np.array(x) for x in zip(*notes, strict=True))
    piece = make_piece(t, d, p)
    roles = note_roles(piece, P)
    index = {
        (int(a), int(c)): i for i, (a, c) in enumerate(zip(piece.time, piece.pitch, strict=True))
    }
    assert roles.struck[index[(18, 62)]] == P.passing
    assert roles.struck[index[(42, 72)]] == P.anticipation
    f4 = index[(0, 65)]
    assert roles.held[f4] == P.suspension and roles.held_from[f4] == 12
    for key in ((0, 60), (24, 64), (12, 48), (48, 72)):
        assert roles.struck[index[key]] == 1 and roles.held_from[index[key]] == NEVER


def test_a_prepared_seventh_that_resolves_as_the_bass_moves_stays_a_chord_tone():
    notes = [(0, 24, 65), (24, 12, 64), (0, 12, 50), (12, 12, 43), (24, 12, 48)]
    t, d, p = (np.array(x) for x in zip(*notes, strict=True))
    piece = make_piece(t, d, p)
    roles = note_roles(piece, P)
    f4 = int(np.flatnonzero((piece.time == 0) & (piece.pitch == 65))[0])
    assert roles.held_from[f4] == NEVER and roles.held[f4] == 1
