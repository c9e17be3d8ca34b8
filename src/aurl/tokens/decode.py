"""Token ids -> Score. Tolerant: tokens that break the grammar are skipped, never fatal."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import symusic

from aurl.tokens.tracks import track_names
from aurl.tokens.vocab import DRUM_PROGRAM, EOS, TokenType, Vocabulary


def decode(ids, vocab: Vocabulary) -> symusic.Score:
    """Decode token ids into a tick Score with ``steps_per_quarter * micro`` ticks per quarter.

    One track per program (drums on their own track), or with tracks one per declared track
    that has notes, with its program and a name (its voice, else its program's); time
    signatures at the bars that carry a TimeSig token, tempos where Tempo tokens are.
    Decoding stops at EOS.
    """
    types, values = vocab.types.tolist(), vocab.values.tolist()  # plain ints: fast to compare
    bar_steps, tempos, velocities = (
        vocab.bar_steps.tolist(),
        vocab.tempo_values,
        vocab.velocity_values,
    )
    BAR, SIG, POS, TEMPO = (
        int(TokenType.BAR),
        int(TokenType.TIMESIG),
        int(TokenType.POSITION),
        int(TokenType.TEMPO),
    )
    PROGRAM, PITCH, VEL, DUR = (int(TokenType.PROGRAM), int(TokenType.PITCH), int(TokenType.VELOCITY),
                                int(TokenType.DURATION))  # fmt: skip
    MICRO, micro = int(TokenType.MICROTIMING), vocab.config.micro
    TRACK, VOICE = int(TokenType.TRACK), int(TokenType.VOICE)
    declared: list[list[int]] = []  # [program, voice] of each declared track
    part = -1  # with tracks, notes go to the current track (-1: none yet)
    notes: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    score = symusic.Score(vocab.config.steps_per_quarter * micro)
    bar_start, bar_len, seen_bar = 0, 0, False
    time, program, pitch, velocity, offset = 0, 0, None, None, 0
    default_len = bar_steps[vocab.offsets[TokenType.TIMESIG] + _four_four(vocab)]
    size = vocab.size
    for tok in np.asarray(ids, np.int64).tolist():
        if tok == EOS:
            break
        if not 0 <= tok < size:
            continue
        kind, value = types[tok], values[tok]
        if kind == PITCH:
            pitch = value
        elif kind == VEL:
            velocity = int(velocities[value])
        elif kind == DUR:
            if pitch is not None and velocity is not None:
                key = program if not declared else part
                notes[key].append((time * micro + offset, (value + 1) * micro, pitch, velocity))
            pitch = velocity = None
            offset = 0
        elif kind == MICRO:
            offset = value - micro // 2
        elif kind == POS:
            time = bar_start + value
        elif kind == PROGRAM:
            program = value
            if declared and not seen_bar:
                declared[-1][0] = value
        elif kind == TRACK:
            if not seen_bar:
                declared.append([0, -1])
            part = value
        elif kind == VOICE:
            if declared and not seen_bar:
                declared[-1][1] = value
        elif kind == BAR:
            if seen_bar:
                bar_start += bar_len or default_len
            seen_bar, time = True, bar_start
        elif kind == SIG:
            num, den = vocab.time_signatures[value]
            bar_len = bar_steps[tok]
            score.time_signatures.append(symusic.TimeSignature(bar_start * micro, num, den))
        elif kind == TEMPO:
            score.tempos.append(symusic.Tempo(time * micro, float(tempos[value])))
    if declared:
        _add_declared(score, notes, declared)
        return score
    for prog in sorted(notes):
        drum = prog == DRUM_PROGRAM
        _add_track(score, "Drums" if drum else f"Program {prog}", prog, notes[prog])
    return score


def _add_declared(score: symusic.Score, notes: dict, declared: list[list[int]]) -> None:
    """One track per declared track with notes, in declaration order; notes of a track never
    declared go to the first one."""
    for k in [k for k in notes if not 0 <= k < len(declared)]:
        notes[0].extend(notes.pop(k))
    names = track_names([p for p, _ in declared], [v for _, v in declared])
    for k, (prog, _) in enumerate(declared):
        if notes.get(k):
            _add_track(score, names[k], prog, sorted(notes[k]))


def _add_track(score: symusic.Score, name: str, program: int, notes: list) -> None:
    arr = np.array(notes, np.int32)
    drum = program == DRUM_PROGRAM
    track = symusic.Track(name, 0 if drum else program, drum)
    track.notes = symusic.Note.from_numpy(
        arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int8), arr[:, 3].astype(np.int8)
    )
    score.tracks.append(track)


def _four_four(vocab: Vocabulary) -> int:
    sigs = vocab.time_signatures
    return sigs.index((4, 4)) if (4, 4) in sigs else 0
