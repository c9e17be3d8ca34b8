"""Score -> token ids, vectorized over symusic's numpy arrays.

A piece is ``BOS (Bar [TimeSig] (Position [Tempo] ([Program] Pitch Velocity [MicroTiming]
Duration)+)*)* EOS``. Every event becomes a fixed-width row of five slots (-1 where a slot is unused); the rows are
sorted by (time, kind, program, pitch) and flattened, so no Python loop runs per note.
"""

from __future__ import annotations

import functools

import numpy as np
import symusic

from aurl.tokens.vocab import BOS, DRUM_PROGRAM, EOS, TokenType, Vocabulary, tempo_bin, velocity_bin

_BAR_ROW, _POSITION_ROW, _NOTE_ROW = 0, 1, 2


def score_to_notes(
    score: symusic.Score, steps_per_quarter: int, micro: int = 1
) -> dict[str, np.ndarray]:
    """All notes of ``score`` on the grid, as flat arrays sorted by (time, program, pitch).

    Drum tracks get program ``DRUM_PROGRAM``. Durations are at least one step. With
    ``micro`` > 1, ``offset`` holds each onset's distance from its grid step in 1/micro of a
    step (from ``-(micro // 2)`` up); otherwise it is all zeros.
    """
    grid = score.resample(steps_per_quarter * micro, min_dur=1)
    parts, programs = [], []
    for track in grid.tracks:
        if track.note_num():
            parts.append(track.notes.numpy())
            programs.append(DRUM_PROGRAM if track.is_drum else int(track.program))
    keys = ("time", "duration", "pitch", "velocity")
    if not parts:
        return {k: np.zeros(0, np.int64) for k in (*keys, "program", "offset")}
    notes = {k: np.concatenate([p[k] for p in parts]).astype(np.int64) for k in keys}
    notes["program"] = np.repeat(np.array(programs, np.int64), [len(p["time"]) for p in parts])
    fine = notes["time"]
    notes["time"] = (fine + micro // 2) // micro  # nearest grid step
    notes["offset"] = fine - notes["time"] * micro
    notes["duration"] = np.maximum((notes["duration"] + micro // 2) // micro, 1)
    # One int64 key (time, program, pitch) sorts faster than a three-key lexsort.
    order = np.argsort(notes["time"] << 16 | notes["program"] << 8 | notes["pitch"], kind="stable")
    return {k: v[order] for k, v in notes.items()}


def bar_grid(score: symusic.Score, vocab: Vocabulary, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Bar start times (in steps) covering ``[0, end]`` and the TimeSig index of each bar.

    A time-signature change takes effect at the first bar line at or after it, so bars are
    always whole. Signatures without a token fall back to 4/4 (or the first one known).
    """
    sigs = vocab.time_signatures
    fallback = sigs.index((4, 4)) if (4, 4) in sigs else 0
    ts = score.time_signatures.numpy()
    steps = np.rint(ts["time"] * (vocab.config.steps_per_quarter / score.tpq)).astype(np.int64)
    changes = sorted(
        (t, sigs.index((n, d)) if (n, d) in sigs else fallback)
        for t, n, d in zip(
            steps.tolist(), ts["numerator"].tolist(), ts["denominator"].tolist(), strict=True
        )  # fmt: skip
    )
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, changes[0][1] if changes else fallback))
    first_sig = vocab.offsets[TokenType.TIMESIG]
    starts, kinds, counts, t = [], [], [], 0
    for i, (_, sig) in enumerate(changes):
        length = int(vocab.bar_steps[first_sig + sig])
        limit = changes[i + 1][0] if i + 1 < len(changes) else end + 1
        stop = max(t, t + -(-(limit - t) // length) * length)  # first bar line at/after limit
        if i + 1 == len(changes):
            stop = max(stop, t + length)
        starts.append(np.arange(t, stop, length, dtype=np.int64))
        kinds.append(sig)
        counts.append(len(starts[-1]))
        t = stop
    return np.concatenate(starts), np.repeat(np.array(kinds, np.int64), counts)


def encode(score: symusic.Score, vocab: Vocabulary) -> np.ndarray:
    """Encode ``score`` to token ids (int64), from BOS to EOS.

    Notes are quantized to the grid; durations longer than the longest Duration token are
    clipped to it; velocities and tempos go to their bins.
    """
    cfg = vocab.config
    off = vocab.offsets
    notes = score_to_notes(score, cfg.steps_per_quarter, cfg.micro)
    tempos = score.tempos.numpy()
    t_time = np.rint(tempos["time"].astype(np.float64) * cfg.steps_per_quarter / score.tpq)
    t_time = t_time.astype(np.int64)
    t_bin = tempo_bin(60_000_000 / np.maximum(tempos["mspq"], 1), vocab)

    last = int(notes["time"][-1]) if len(notes["time"]) else 0
    bar_starts, bar_sigs = bar_grid(score, vocab, last)
    bar_starts, bar_sigs = bar_starts[bar_starts <= last], bar_sigs[bar_starts <= last]

    # Tempo changes: last one per time step, only when the bin changes, inside the bars.
    keep = np.append(t_time[1:] != t_time[:-1], True) if len(t_time) else np.zeros(0, bool)
    t_time, t_bin = t_time[keep], t_bin[keep]
    changed = np.append(True, t_bin[1:] != t_bin[:-1]) if len(t_bin) else keep[:0]
    t_time, t_bin = t_time[changed], t_bin[changed]
    inside = (t_time >= 0) & (t_time <= last)
    t_time, t_bin = t_time[inside], t_bin[inside]

    # Bar rows: Bar, TimeSig where the signature changes (and at the first bar).
    sig_change = np.append(True, bar_sigs[1:] != bar_sigs[:-1])
    bar_rows = np.full((len(bar_starts), 5), -1, np.int64)
    bar_rows[:, 0] = off[TokenType.BAR]
    bar_rows[sig_change, 1] = off[TokenType.TIMESIG] + bar_sigs[sig_change]

    # Position rows: every time with a note or a tempo change.
    pos_times = _sorted_unique(np.concatenate([notes["time"], t_time]))
    bar_of = np.searchsorted(bar_starts, pos_times, side="right") - 1
    pos_rows = np.full((len(pos_times), 5), -1, np.int64)
    pos_rows[:, 0] = off[TokenType.POSITION] + pos_times - bar_starts[bar_of]
    if len(t_time):  # t_time is sorted and unique: look each position up in it
        at = np.searchsorted(t_time, pos_times).clip(max=len(t_time) - 1)
        has_tempo = t_time[at] == pos_times
        pos_rows[has_tempo, 1] = off[TokenType.TEMPO] + t_bin[at[has_tempo]]

    # Note rows: Program only where it changes inside a position.
    n = len(notes["time"])
    new_program = np.ones(n, bool)
    if n > 1:
        new_program[1:] = (notes["time"][1:] != notes["time"][:-1]) | (
            notes["program"][1:] != notes["program"][:-1]
        )
    max_dur = vocab.counts[TokenType.DURATION]
    note_rows = np.empty((n, 5), np.int64)
    note_rows[:, 0] = np.where(new_program, off[TokenType.PROGRAM] + notes["program"], -1)
    note_rows[:, 1] = off[TokenType.PITCH] + notes["pitch"]
    note_rows[:, 2] = off[TokenType.VELOCITY] + _velocity_lut(cfg.velocity_bins)[notes["velocity"]]
    micro_id = off[TokenType.MICROTIMING] + notes["offset"] + cfg.micro // 2
    note_rows[:, 3] = np.where(notes["offset"] != 0, micro_id, -1)  # omitted when on the grid
    note_rows[:, 4] = off[TokenType.DURATION] + np.minimum(notes["duration"], max_dur) - 1

    rows = np.concatenate([bar_rows, pos_rows, note_rows])
    time = np.concatenate([bar_starts, pos_times, notes["time"]])
    kind = np.concatenate(
        [
            np.full(len(bar_rows), _BAR_ROW),
            np.full(len(pos_rows), _POSITION_ROW),
            np.full(n, _NOTE_ROW),
        ]
    )
    flat = rows[np.argsort(time * 4 + kind, kind="stable")].ravel()  # stable: keeps note order
    return np.concatenate([[BOS], flat[flat >= 0], [EOS]]).astype(np.int64)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


@functools.cache
def _velocity_lut(bins: int) -> np.ndarray:
    """Bin index of every MIDI velocity 0..127 (a lookup beats the arithmetic per note)."""
    return velocity_bin(np.arange(128), bins)
