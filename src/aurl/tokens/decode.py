"""Token ids -> Score. Tolerant: tokens that break the grammar are skipped, never fatal."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import symusic

from aurl.tokens.vocab import DRUM_PROGRAM, EOS, TokenType, Vocabulary


def decode(ids, vocab: Vocabulary) -> symusic.Score:
    """Decode token ids into a tick Score with ``steps_per_quarter * micro`` ticks per quarter.

    One track per program (drums on their own track), time signatures at the bars that
    carry a TimeSig token, tempos where Tempo tokens are. Decoding stops at EOS.
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
                notes[program].append((time * micro + offset, (value + 1) * micro, pitch, velocity))
            pitch = velocity = None
            offset = 0
        elif kind == MICRO:
            offset = value - micro // 2
        elif kind == POS:
            time = bar_start + value
        elif kind == PROGRAM:
            program = value
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
    for prog in sorted(notes):
        arr = np.array(notes[prog], np.int32)
        drum = prog == DRUM_PROGRAM
        track = symusic.Track("Drums" if drum else f"Program {prog}", 0 if drum else prog, drum)
        track.notes = symusic.Note.from_numpy(
            arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int8), arr[:, 3].astype(np.int8)
        )
        score.tracks.append(track)
    return score


def _four_four(vocab: Vocabulary) -> int:
    sigs = vocab.time_signatures
    return sigs.index((4, 4)) if (4, 4) in sigs else 0
