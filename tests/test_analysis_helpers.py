"""Built music shared by the analysis tests (chords, cadences, melodies, forms); no tests here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from aurl.analysis.piece import Piece, make_piece

Q = 12  # steps per quarter


def chord_piece(chords: list[list[int]], beats_each: int = 4, melody: bool = False) -> Piece:
    """Block chords (MIDI pitches), one after another, each ``beats_each`` quarters long."""
    time, dur, pitch = [], [], []
    for i, chord in enumerate(chords):
        for p in chord:
            time.append(i * beats_each * Q)
            dur.append(beats_each * Q)
            pitch.append(p)
    return make_piece(np.array(time), np.array(dur), np.array(pitch))


def cadence(tonic: int, mode: str) -> list[list[int]]:
    """I-IV-V-I (i-iv-V-i in minor) in close position over a bass, on any tonic pitch class."""
    third = 3 if mode == "minor" else 4
    base = 48 + tonic
    tonic_chord = [base, base + 12, base + 12 + third, base + 19]
    sub = [base + 5, base + 12, base + 17, base + 17 + third]  # IV / iv
    dom = [base + 7, base + 11, base + 14, base + 19]  # V with the leading tone
    return [tonic_chord, sub, dom, tonic_chord]


def melody_piece(pitches: list[int], durations: list[int] | None = None) -> Piece:
    """A monophonic line; durations in quarters (default all 1)."""
    durations = durations or [1] * len(pitches)
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]) * Q
    return make_piece(starts, np.array(durations) * Q, np.array(pitches))


def aaba_piece() -> Piece:
    """32 bars of 4/4 in form AABA (8 bars each): melody over block chords, B in another key."""
    rng = np.random.default_rng(3)
    a_mel = rng.choice([60, 62, 64, 65, 67, 69, 71, 72], size=(8, 4))
    b_mel = rng.choice([61, 63, 66, 68, 70, 73], size=(8, 4))
    a_chords = [[48, 52, 55], [53, 57, 60], [55, 59, 62], [48, 52, 55]] * 2
    b_chords = [[49, 53, 56], [54, 58, 61], [56, 60, 63], [51, 54, 58]] * 2
    time, dur, pitch = [], [], []
    for section, (mel, chords) in enumerate(
        [(a_mel, a_chords), (a_mel, a_chords), (b_mel, b_chords), (a_mel, a_chords)]
    ):
        for bar in range(8):
            start = (section * 8 + bar) * 4 * Q
            for beat, p in enumerate(mel[bar]):
                time.append(start + beat * Q)
                dur.append(Q)
                pitch.append(int(p) + 12)
            for p in chords[bar]:
                time.append(start)
                dur.append(4 * Q)
                pitch.append(p)
    return make_piece(np.array(time), np.array(dur), np.array(pitch))


def piece_to_midi(piece: Piece, path: Path, tpq: int = Q) -> Path:
    """Write a Piece as a one-track MIDI file in 4/4 (its steps become ticks)."""
    score = symusic.Score(tpq)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("piano", 0, False)
    track.notes = symusic.Note.from_numpy(
        piece.time.astype(np.int32),
        piece.duration.astype(np.int32),
        piece.pitch.astype(np.int8),
        piece.velocity.astype(np.int8),
    )
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path
