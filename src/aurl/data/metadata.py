"""Per-piece metadata stored beside the shards: what later conditioning and filtering use."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.analysis.key import find_keys
from aurl.midi.arrays import ScoreArrays, score_arrays


def piece_metadata(score: symusic.Score, source_path: str) -> dict:
    """Key estimate, tempo, time signatures, programs, note density and duration of a piece.

    Args:
        score: the piece as read (any ticks per quarter).
        source_path: where it came from, stored as given.
    """
    return pieces_metadata([score], [source_path])[0]


def pieces_metadata(
    scores: list[symusic.Score],
    source_paths: list[str],
    arrays: list[ScoreArrays] | None = None,
) -> list[dict]:
    """:func:`piece_metadata` of each score, with the keys found for all of them at once.

    Args:
        scores: the pieces as read.
        source_paths: where each came from.
        arrays: each score's ``score_arrays``, if the caller has them already.
    """
    arrays = arrays if arrays is not None else [score_arrays(s) for s in scores]
    hists = np.zeros((len(scores), 12))
    programs: list[set[int]] = []
    for k, score in enumerate(scores):
        found = set()
        pitch, weight = [], []
        for track, a in zip(score.tracks, arrays[k].tracks, strict=True):
            if not len(a["time"]):
                continue
            found.add(128 if track.is_drum else int(track.program))
            if not track.is_drum:
                pitch.append(a["pitch"])
                weight.append(a["duration"])
        if pitch:  # durations summed per pitch class, in note order
            hists[k] = np.bincount(np.concatenate(pitch) % 12, np.concatenate(weight), 12)
        programs.append(found)
    keys = find_keys(hists)
    out = []
    for k, score in enumerate(scores):
        tempos, sigs = arrays[k].tempos, arrays[k].time_signatures
        end, count = score.end(), score.note_num()
        seconds = seconds_at(score, end, tempos)
        key = None
        if hists[k].any():
            key = {"name": keys[k].name, "tonic": keys[k].tonic, "mode": keys[k].mode,
                   "confidence": keys[k].confidence}  # fmt: skip
        qpm = [round(60_000_000 / int(m), 2) for m in tempos["mspq"][:1]]
        signatures = zip(sigs["numerator"].tolist(), sigs["denominator"].tolist(), strict=True)
        out.append({
            "source": source_paths[k],
            "key": key,
            "tempo": qpm[0] if qpm else 120.0,
            "tempo_changes": max(len(tempos["time"]) - 1, 0),
            "time_signatures": sorted({f"{n}/{d}" for n, d in signatures}),
            "programs": sorted(programs[k]),
            "notes": count,
            "seconds": round(seconds, 3),
            "quarters": round(float(end / max(score.tpq, 1)), 3),
            "notes_per_second": round(count / seconds, 3) if seconds else 0.0,
        })  # fmt: skip
    return out


def seconds_at(score: symusic.Score, tick: int, tempos: np.ndarray | None = None) -> float:
    """Time in seconds of ``tick``, through the score's tempo map (120 BPM before any).

    ``tempos``: ``score.tempos.numpy()``, if the caller has it already."""
    t = score.tempos.numpy() if tempos is None else tempos
    times = np.concatenate([[0], t["time"].astype(np.int64)])
    mspq = np.concatenate([[500_000], t["mspq"].astype(np.int64)])
    keep = times <= tick
    times, mspq = times[keep], mspq[keep]
    spans = np.diff(np.append(times, tick))  # ticks under each tempo
    return float((spans * mspq).sum() / score.tpq / 1e6)
