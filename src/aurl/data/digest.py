"""What a Score holds musically, as a hash: equal hashes mean duplicate pieces.

The hash covers the notes (time, duration, pitch, velocity, program with drums as 128),
tempos and time signatures, with times divided by their greatest common divisor so that
the ticks-per-quarter chosen by the file's writer does not matter. The notes count as a
multiset: each note is mixed into two 64-bit values and the values are summed, so track
names, order and splitting do not count, and no sort is needed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import symusic

from aurl.midi.arrays import NoteTable, ScoreArrays, note_table

_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))


def content_digest(score: symusic.Score, arrays: ScoreArrays | None = None) -> str:
    """The content hash of one Score (hex).

    Args:
        score: The Score.
        arrays: ``score_arrays(score)``, if the caller has it already.
    """
    return content_digests(note_table([score], None if arrays is None else [arrays]))[0]


def content_digests(table: NoteTable) -> list[str]:
    """:func:`content_digest` of each Score of ``table``, computed for all of them at once."""
    count, piece = len(table), table.piece
    filled = table.notes > 0
    at = table.starts[filled]  # where each piece with notes starts
    units = np.zeros(count, np.int64)  # gcd(0, x) = x: a piece without notes
    if len(piece):
        units[filled] = np.gcd(np.gcd.reduceat(table.time, at), np.gcd.reduceat(table.duration, at))
    for k, a in enumerate(table.scores):
        extra = np.concatenate([a.tempos["time"], a.time_signatures["time"], [a.tpq]])
        units[k] = max(abs(int(np.gcd(units[k], np.gcd.reduce(extra.astype(np.int64))))), 1)
    unit = units[piece]
    # Times and durations in units are below 2**31 (ticks are int32): one word holds both.
    timing = (table.time // unit | (table.duration // unit) << 32).astype(np.uint64)
    rest = (table.pitch | table.velocity << 8 | table.program << 16).astype(np.uint64)
    sums = []
    for seed in _SEEDS:
        h = _mix(timing ^ seed)
        h = _mix(h ^ rest)
        total = np.zeros(count, np.uint64)
        if len(h):
            with np.errstate(over="ignore"):  # sums wrap around 2**64, as meant
                total[filled] = np.add.reduceat(h, at)
        sums.append(total)
    digests = []
    for k, a in enumerate(table.scores):
        t, s, u = a.tempos, a.time_signatures, int(units[k])
        h = hashlib.blake2b(str(a.tpq // u).encode(), digest_size=16)
        h.update(np.array([table.notes[k], sums[0][k], sums[1][k]], np.uint64).tobytes())
        h.update((t["time"].astype(np.int64) // u).tobytes() + t["mspq"].tobytes())
        h.update((s["time"].astype(np.int64) // u).tobytes())
        h.update(s["numerator"].tobytes() + s["denominator"].tobytes())
        digests.append(h.hexdigest())
    return digests


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit flips about half the output bits."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
