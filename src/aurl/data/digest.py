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

from aurl.midi.arrays import ScoreArrays, score_arrays

_KEYS = ("time", "duration", "pitch", "velocity")
_SEEDS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03))


def content_digest(score: symusic.Score, arrays: ScoreArrays | None = None) -> str:
    """The content hash of one Score (hex).

    Args:
        score: The Score.
        arrays: ``score_arrays(score)``, if the caller has it already.
    """
    return content_digests([score], None if arrays is None else [arrays])[0]


def content_digests(
    scores: list[symusic.Score], arrays: list[ScoreArrays] | None = None
) -> list[str]:
    """:func:`content_digest` of each score, computed for all of them at once.

    Args:
        scores: The Scores.
        arrays: Each score's ``score_arrays``, if the caller has them already.
    """
    tables = arrays if arrays is not None else [score_arrays(s) for s in scores]
    arrays, programs, pieces = [], [], []
    for k, score in enumerate(scores):
        for track, a in zip(score.tracks, tables[k].tracks, strict=True):
            if len(a["time"]):
                arrays.append(a)
                programs.append(128 if track.is_drum else int(track.program))
                pieces.append(k)
    counts = [len(a["time"]) for a in arrays]
    time, duration, pitch, velocity = (
        np.concatenate([a[key] for a in arrays]).astype(np.int64) if arrays
        else np.zeros(0, np.int64) for key in _KEYS
    )  # fmt: skip
    program = np.repeat(np.array(programs, np.int64), counts)
    piece = np.repeat(np.array(pieces, np.int64), counts)
    per_piece = np.bincount(piece, minlength=len(scores))
    filled = per_piece > 0
    at = (np.cumsum(per_piece) - per_piece)[filled]  # where each piece with notes starts
    units = np.zeros(len(scores), np.int64)  # gcd(0, x) = x: a piece without notes
    if len(piece):
        units[filled] = np.gcd(np.gcd.reduceat(time, at), np.gcd.reduceat(duration, at))
    tempos, sigs = [], []
    for k, score in enumerate(scores):
        t, s = tables[k].tempos, tables[k].time_signatures
        extra = np.concatenate([t["time"], s["time"], [score.tpq]]).astype(np.int64)
        units[k] = max(abs(int(np.gcd(units[k], np.gcd.reduce(extra)))), 1)
        tempos.append(t)
        sigs.append(s)
    unit = units[piece]
    rest = (pitch | velocity << 8 | program << 16).astype(np.uint64)
    sums = []
    for seed in _SEEDS:
        h = _mix((time // unit).astype(np.uint64) ^ seed)
        h = _mix(h ^ (duration // unit).astype(np.uint64))
        h = _mix(h ^ rest)
        total = np.zeros(len(scores), np.uint64)
        if len(h):
            with np.errstate(over="ignore"):  # sums wrap around 2**64, as meant
                total[filled] = np.add.reduceat(h, at)
        sums.append(total)
    digests = []
    for k, score in enumerate(scores):
        t, s, u = tempos[k], sigs[k], int(units[k])
        h = hashlib.blake2b(str(score.tpq // u).encode(), digest_size=16)
        h.update(np.array([per_piece[k], sums[0][k], sums[1][k]], np.uint64).tobytes())
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
