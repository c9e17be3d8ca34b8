"""Per-piece metadata stored beside the shards: what later conditioning and filtering use."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.analysis.key import find_keys
from aurl.midi.arrays import DRUMS, NoteTable, note_table


def piece_metadata(score: symusic.Score, source_path: str) -> dict:
    """Key estimate, tempo, time signatures, programs, note density and duration of a piece.

    Args:
        score: the piece as read (any ticks per quarter).
        source_path: where it came from, stored as given.
    """
    return pieces_metadata(note_table([score]), [source_path])[0]


def pieces_metadata(table: NoteTable, source_paths: list[str]) -> list[dict]:
    """:func:`piece_metadata` of each Score of ``table``, with the keys found at once.

    Args:
        table: the pieces as read.
        source_paths: where each came from.
    """
    count = len(table)
    # Durations summed per pitch class and piece, in note order: one bincount for all.
    pitched = table.program != DRUMS
    cell = table.piece[pitched] * 12 + table.pitch[pitched] % 12
    hists = np.bincount(cell, table.duration[pitched], 12 * count).reshape(count, 12)
    keys = find_keys(hists)
    # The programs that have notes in each piece (drums as DRUMS), in order.
    found = np.bincount(table.piece * (DRUMS + 1) + table.program, minlength=count * (DRUMS + 1))
    pieces, program = np.nonzero(found.reshape(count, DRUMS + 1))
    programs: list[list[int]] = [[] for _ in range(count)]
    for piece, p in zip(pieces.tolist(), program.tolist(), strict=True):
        programs[piece].append(p)
    arrays = table.scores
    seconds = _seconds([a.tpq for a in arrays], [a.end for a in arrays], [a.tempos for a in arrays])
    out = []
    for k, a in enumerate(arrays):
        key = None
        if hists[k].any():
            key = {"name": keys[k].name, "tonic": keys[k].tonic, "mode": keys[k].mode,
                   "confidence": keys[k].confidence}  # fmt: skip
        qpm = [round(60_000_000 / int(m), 2) for m in a.tempos["mspq"][:1]]
        sigs = a.time_signatures
        signatures = zip(sigs["numerator"].tolist(), sigs["denominator"].tolist(), strict=True)
        notes, duration = int(table.notes[k]), float(seconds[k])
        out.append({
            "source": source_paths[k],
            "key": key,
            "tempo": qpm[0] if qpm else 120.0,
            "tempo_changes": max(len(a.tempos["time"]) - 1, 0),
            "time_signatures": sorted({f"{n}/{d}" for n, d in signatures}),
            "programs": programs[k],
            "notes": notes,
            "seconds": round(duration, 3),
            "quarters": round(float(a.end / max(a.tpq, 1)), 3),
            "notes_per_second": round(notes / duration, 3) if duration else 0.0,
        })  # fmt: skip
    return out


def seconds_at(score: symusic.Score, tick: int) -> float:
    """Time in seconds of ``tick``, through the score's tempo map (120 BPM before any)."""
    return float(_seconds([score.tpq], [tick], [score.tempos.numpy()])[0])


def _seconds(tpqs: list[int], ticks: list[int], tempos: list[dict[str, np.ndarray]]) -> np.ndarray:
    """:func:`seconds_at` for several tempo maps at once (each map's changes in time order)."""
    count = len(tpqs)
    piece = np.repeat(np.arange(count), [len(t["time"]) + 1 for t in tempos])
    times = np.concatenate([x for t in tempos for x in ([0], t["time"])]).astype(np.int64)
    mspq = np.concatenate([x for t in tempos for x in ([500_000], t["mspq"])]).astype(np.int64)
    end = np.asarray(ticks, np.int64)
    keep = times <= end[piece]  # each piece keeps its leading 120 BPM at tick 0
    times, mspq, piece = times[keep], mspq[keep], piece[keep]
    until = np.empty_like(times)  # where each tempo stops counting: the next one, or the end
    until[:-1] = times[1:]
    last = np.ones(len(piece), bool)
    last[:-1] = piece[1:] != piece[:-1]
    until[last] = end[piece[last]]
    first = np.flatnonzero(np.r_[True, last[:-1]])
    return np.add.reduceat((until - times) * mspq, first) / np.asarray(tpqs) / 1e6
