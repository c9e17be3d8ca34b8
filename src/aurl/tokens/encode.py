"""Score -> token ids, vectorized over symusic's numpy arrays.

A piece is ``BOS (Bar [TimeSig] (Position [Tempo] ([Program] Pitch Velocity [MicroTiming]
Duration)+)*)* EOS``. Every event becomes a fixed-width row of five slots (-1 where a slot is unused); the rows are
sorted by (time, kind, program, pitch) and flattened, so no Python loop runs per note.
"""

from __future__ import annotations

import functools

import numpy as np
import symusic

from aurl.midi.arrays import ScoreArrays
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
    notes = scores_to_notes([score], steps_per_quarter, micro)
    del notes["piece"]
    return notes


def scores_to_notes(
    scores: list[symusic.Score],
    steps_per_quarter: int,
    micro: int = 1,
    arrays: list[ScoreArrays] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`score_to_notes` of several scores at once, one set of flat arrays sorted by
    (piece, time, program, pitch), with ``piece`` giving each note's score.

    ``arrays`` holds each score's ``score_arrays`` when the caller has them already. Tick
    times are brought to the grid here, as symusic's ``resample`` would.
    """
    keys = ("time", "duration", "pitch", "velocity")
    parts, programs, pieces, tpqs = [], [], [], []
    for k, score in enumerate(scores):
        if score.tpq <= 0:
            raise ValueError(f"a score has {score.tpq} ticks per quarter")
        tracks = arrays[k].tracks if arrays is not None else [t.notes.numpy() for t in score.tracks]
        for track, a in zip(score.tracks, tracks, strict=True):
            if len(a["time"]):
                parts.append(a)
                programs.append(DRUM_PROGRAM if track.is_drum else int(track.program))
                pieces.append(k)
                tpqs.append(score.tpq)
    if not parts:
        return {k: np.zeros(0, np.int64) for k in (*keys, "program", "offset", "piece")}
    out = {k: np.concatenate([p[k] for p in parts]).astype(np.int64) for k in keys}
    counts = [len(p["time"]) for p in parts]
    out["program"] = np.repeat(np.array(programs, np.int64), counts)
    out["piece"] = np.repeat(np.array(pieces, np.int64), counts)
    tpq = np.repeat(np.array(tpqs, np.int64), counts)
    fine = _to_grid(out["time"], tpq, steps_per_quarter * micro)
    out["time"] = (fine + micro // 2) // micro  # nearest grid step
    out["offset"] = fine - out["time"] * micro
    duration = np.maximum(_to_grid(out["duration"], tpq, steps_per_quarter * micro), 1)
    out["duration"] = np.maximum((duration + micro // 2) // micro, 1)
    # One int64 key (piece, time, program, pitch) sorts faster than a four-key lexsort; it
    # holds times below 2**31 (symusic's ticks are int32) for up to 2**16 scores.
    key = out["time"] << 16 | out["program"] << 8 | out["pitch"]
    if len(scores) > 1:
        key |= out["piece"] << 47
    order = np.argsort(key, kind="stable")
    return {k: v[order] for k, v in out.items()}


def _to_grid(ticks: np.ndarray, tpq: np.ndarray | int, steps: int) -> np.ndarray:
    """``ticks * steps / tpq`` rounded half away from zero, in integers (what symusic's
    ``resample`` computes in floating point)."""
    magnitude = (2 * np.abs(ticks) * steps + tpq) // (2 * tpq)
    return np.where(ticks < 0, -magnitude, magnitude)


def bar_grid(
    score: symusic.Score, vocab: Vocabulary, end: int, ts: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bar start times (in steps) covering ``[0, end]`` and the TimeSig index of each bar.

    A time-signature change takes effect at the first bar line at or after it, so bars are
    always whole. Signatures without a token fall back to 4/4 (or the first one known).
    ``ts``: ``score.time_signatures.numpy()``, if the caller has it already.
    """
    sigs = vocab.time_signatures
    fallback = sigs.index((4, 4)) if (4, 4) in sigs else 0
    ts = score.time_signatures.numpy() if ts is None else ts
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
    return encode_many([score], vocab)[0]


def encode_many(
    scores: list[symusic.Score],
    vocab: Vocabulary,
    arrays: list[ScoreArrays] | None = None,
) -> list[np.ndarray]:
    """:func:`encode` of each score, in one vectorized pass over all of them.

    The pieces are laid end to end on one time line (each starts one step after the last
    note of the one before, on its own bar grid), so every step below runs once for the
    batch: for small files the cost is otherwise mostly numpy's overhead per call.
    ``arrays``: each score's ``score_arrays``, when the caller has them.
    """
    if len(scores) >= 1 << 16:
        raise ValueError(f"encode_many takes at most {(1 << 16) - 1} scores at once")
    if not scores:
        return []
    cfg, off = vocab.config, vocab.offsets
    count = len(scores)
    notes = scores_to_notes(scores, cfg.steps_per_quarter, cfg.micro, arrays)
    per_piece = np.bincount(notes["piece"], minlength=count)
    last = np.zeros(count, np.int64)  # each piece's last onset (notes sort by piece, time)
    has = per_piece > 0
    last[has] = notes["time"][np.cumsum(per_piece)[has] - 1]
    start = np.concatenate([[0], np.cumsum(last + 1)[:-1]])  # where each piece begins

    tempo_times, tempo_mspq, bar_times, bar_kinds = [], [], [], []
    for k, score in enumerate(scores):
        tempos = score.tempos.numpy() if arrays is None else arrays[k].tempos
        t = np.rint(tempos["time"].astype(np.float64) * cfg.steps_per_quarter / score.tpq)
        tempo_times.append(t.astype(np.int64) + start[k])
        tempo_mspq.append(tempos["mspq"].astype(np.int64))
        sigs_k = None if arrays is None else arrays[k].time_signatures
        starts, sigs = bar_grid(score, vocab, int(last[k]), sigs_k)
        inside = starts <= last[k]
        bar_times.append(starts[inside] + start[k])
        bar_kinds.append(sigs[inside])

    # Tempo changes: last one per time step, only when the bin changes, inside the bars.
    t_piece = np.repeat(np.arange(count), [len(t) for t in tempo_times])
    t_time = np.concatenate(tempo_times)
    t_bin = tempo_bin(60_000_000 / np.maximum(np.concatenate(tempo_mspq), 1), vocab)
    keep = _run_ends(t_time) | _run_ends(t_piece)
    t_time, t_bin, t_piece = t_time[keep], t_bin[keep], t_piece[keep]
    changed = _run_starts(t_bin) | _run_starts(t_piece)
    t_time, t_bin, t_piece = t_time[changed], t_bin[changed], t_piece[changed]
    inside = (t_time >= start[t_piece]) & (t_time <= start[t_piece] + last[t_piece])
    t_time, t_bin = t_time[inside], t_bin[inside]

    # Bar rows: Bar, TimeSig where the signature changes (and at each piece's first bar).
    bar_starts, bar_sigs = np.concatenate(bar_times), np.concatenate(bar_kinds)
    bar_piece = np.repeat(np.arange(count), [len(b) for b in bar_times])
    sig_change = _run_starts(bar_sigs) | _run_starts(bar_piece)
    bar_rows = np.full((len(bar_starts), 5), -1, np.int64)
    bar_rows[:, 0] = off[TokenType.BAR]
    bar_rows[sig_change, 1] = off[TokenType.TIMESIG] + bar_sigs[sig_change]

    # Position rows: every time with a note or a tempo change.
    note_time = notes["time"] + start[notes["piece"]]
    pos_times = _sorted_unique(np.concatenate([note_time, t_time]))
    bar_of = np.searchsorted(bar_starts, pos_times, side="right") - 1
    pos_rows = np.full((len(pos_times), 5), -1, np.int64)
    pos_rows[:, 0] = off[TokenType.POSITION] + pos_times - bar_starts[bar_of]
    if len(t_time):  # t_time is sorted and unique: look each position up in it
        at = np.searchsorted(t_time, pos_times).clip(max=len(t_time) - 1)
        has_tempo = t_time[at] == pos_times
        pos_rows[has_tempo, 1] = off[TokenType.TEMPO] + t_bin[at[has_tempo]]

    # Note rows: Program only where it changes inside a position.
    n = len(note_time)
    new_program = _run_starts(note_time) | _run_starts(notes["program"])
    max_dur = vocab.counts[TokenType.DURATION]
    note_rows = np.empty((n, 5), np.int64)
    note_rows[:, 0] = np.where(new_program, off[TokenType.PROGRAM] + notes["program"], -1)
    note_rows[:, 1] = off[TokenType.PITCH] + notes["pitch"]
    note_rows[:, 2] = off[TokenType.VELOCITY] + _velocity_lut(cfg.velocity_bins)[notes["velocity"]]
    micro_id = off[TokenType.MICROTIMING] + notes["offset"] + cfg.micro // 2
    note_rows[:, 3] = np.where(notes["offset"] != 0, micro_id, -1)  # omitted when on the grid
    note_rows[:, 4] = off[TokenType.DURATION] + np.minimum(notes["duration"], max_dur) - 1

    rows = np.concatenate([bar_rows, pos_rows, note_rows])
    time = np.concatenate([bar_starts, pos_times, note_time])
    kind = np.repeat([_BAR_ROW, _POSITION_ROW, _NOTE_ROW], [len(bar_rows), len(pos_rows), n])
    order = np.argsort(time * 4 + kind, kind="stable")  # stable: keeps note order
    rows, time = rows[order], time[order]
    valid = rows >= 0
    # A piece's rows run from its start on the time line to the next piece's start.
    before = np.concatenate([[0], np.cumsum(valid.sum(1))])
    cuts = before[np.searchsorted(time, start[1:], side="left")]
    bodies = np.split(rows[valid], cuts)
    return [np.concatenate([[BOS], body, [EOS]]).astype(np.int64) for body in bodies]


def _run_starts(a: np.ndarray) -> np.ndarray:
    """True where an element differs from the one before it, and at the first."""
    out = np.ones(len(a), bool)
    out[1:] = a[1:] != a[:-1]
    return out


def _run_ends(a: np.ndarray) -> np.ndarray:
    """True where an element differs from the one after it, and at the last."""
    out = np.ones(len(a), bool)
    out[:-1] = a[:-1] != a[1:]
    return out


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if len(x) else x


@functools.cache
def _velocity_lut(bins: int) -> np.ndarray:
    """Bin index of every MIDI velocity 0..127 (a lookup beats the arithmetic per note)."""
    return velocity_bin(np.arange(128), bins)
