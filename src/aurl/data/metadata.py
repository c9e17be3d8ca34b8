"""Per-piece metadata stored beside the shards: what later conditioning and filtering use."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.analysis.key import find_key


def piece_metadata(score: symusic.Score, source_path: str) -> dict:
    """Key estimate, tempo, time signatures, programs, note density and duration of a piece.

    Args:
        score: the piece as read (any ticks per quarter).
        source_path: where it came from, stored as given.
    """
    seconds = seconds_at(score, score.end())
    hist = np.zeros(12)
    programs = set()
    for track in score.tracks:
        a = track.notes.numpy()
        if not len(a["time"]):
            continue
        programs.add(128 if track.is_drum else int(track.program))
        if not track.is_drum:
            np.add.at(hist, a["pitch"] % 12, a["duration"].astype(np.float64))
    key = None
    if hist.any():
        k = find_key(hist)
        key = {"name": k.name, "tonic": k.tonic, "mode": k.mode, "confidence": k.confidence}
    tempos = [round(float(t.qpm), 2) for t in score.tempos]
    quarters = score.end() / max(score.tpq, 1)
    return {
        "source": source_path,
        "key": key,
        "tempo": tempos[0] if tempos else 120.0,
        "tempo_changes": max(len(tempos) - 1, 0),
        "time_signatures": sorted(
            {f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures}
        ),
        "programs": sorted(programs),
        "notes": score.note_num(),
        "seconds": round(seconds, 3),
        "quarters": round(float(quarters), 3),
        "notes_per_second": round(score.note_num() / seconds, 3) if seconds else 0.0,
    }


def seconds_at(score: symusic.Score, tick: int) -> float:
    """Time in seconds of ``tick``, through the score's tempo map (120 BPM before any)."""
    t = score.tempos.numpy()
    times = np.concatenate([[0], t["time"].astype(np.int64)])
    mspq = np.concatenate([[500_000], t["mspq"].astype(np.int64)])
    keep = times <= tick
    times, mspq = times[keep], mspq[keep]
    spans = np.diff(np.append(times, tick))  # ticks under each tempo
    return float((spans * mspq).sum() / score.tpq / 1e6)
