"""Preprocessing of scores before tokenizing: pure functions Score -> Score.

Each step is optional and configured by :class:`PreprocessConfig`, which is part of the data
fingerprint (changing it rebuilds the dataset).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import symusic
from pydantic import BaseModel, ConfigDict, Field

PROGRAM_FAMILY_SIZE = 8  # General MIDI groups programs in families of eight


class PreprocessConfig(BaseModel):
    """Which preprocessing steps run, in this order: tracks, velocity, polyphony.

    Attributes:
        merge_tracks: merge tracks that share a program (drums stay on their own track).
        drop_empty_tracks: drop tracks without notes.
        program_families: map every program to the first program of its GM family.
        velocity: ``keep`` or ``normalize`` (scale each piece so its loud notes reach
            ``velocity_target``, keeping the ratios between notes).
        velocity_target: the velocity the piece's 95th percentile is scaled to.
        max_polyphony: at most this many pitched notes sound at once (0: no limit); the
            bass and the top voice are always kept.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    merge_tracks: bool = False
    drop_empty_tracks: bool = True
    program_families: bool = False
    velocity: Literal["keep", "normalize"] = "keep"
    velocity_target: int = Field(100, ge=1, le=127)
    max_polyphony: int = Field(0, ge=0, le=128)


def preprocess(score: symusic.Score, config: PreprocessConfig) -> symusic.Score:
    """Apply the steps ``config`` asks for. ``score`` is never changed: each step that applies
    returns a new Score (with nothing to do, ``score`` itself comes back)."""
    out = score
    if config.program_families:
        out = map_program_families(out)
    if config.merge_tracks:
        out = merge_tracks_by_program(out)
    if config.drop_empty_tracks and any(t.note_num() == 0 for t in out.tracks):
        out = drop_empty_tracks(out)
    if config.velocity == "normalize":
        out = normalize_velocity(out, config.velocity_target)
    if config.max_polyphony:
        out = reduce_polyphony(out, config.max_polyphony)
    return out


def drop_empty_tracks(score: symusic.Score) -> symusic.Score:
    out = score.copy()
    out.tracks = [t for t in out.tracks if t.note_num() > 0]
    return out


def map_program_families(score: symusic.Score) -> symusic.Score:
    """Every pitched track's program becomes its family's first (e.g. 27 -> 24, guitars)."""
    out = score.copy()
    for track in out.tracks:
        if not track.is_drum:
            track.program = track.program - track.program % PROGRAM_FAMILY_SIZE
    return out


def merge_tracks_by_program(score: symusic.Score) -> symusic.Score:
    """One track per (program, drums) pair, notes merged in time order."""
    groups: dict[tuple[bool, int], list[symusic.Track]] = {}
    for track in score.tracks:
        groups.setdefault((track.is_drum, 0 if track.is_drum else track.program), []).append(track)
    out = score.copy()
    merged = []
    for (drum, program), tracks in sorted(groups.items()):
        arrays = [t.notes.numpy() for t in tracks]
        cat = {
            k: np.concatenate([a[k] for a in arrays])
            for k in ("time", "duration", "pitch", "velocity")
        }
        order = np.lexsort((cat["pitch"], cat["time"]))
        track = symusic.Track(tracks[0].name, program, drum)
        track.notes = symusic.Note.from_numpy(
            *(cat[k][order] for k in ("time", "duration", "pitch", "velocity"))
        )
        merged.append(track)
    out.tracks = merged
    return out


def normalize_velocity(score: symusic.Score, target: int = 100) -> symusic.Score:
    """Scale all velocities by one factor so the 95th percentile becomes ``target``.

    The piece's dynamic shape (which notes are louder, by what ratio) is kept; only the
    overall level moves. Results are clipped to 1..127.
    """
    out = score.copy()
    pitched = [t.notes.numpy()["velocity"] for t in out.tracks if t.note_num()]
    if not pitched:
        return out
    level = float(np.percentile(np.concatenate(pitched).astype(np.float64), 95))
    factor = target / max(level, 1.0)
    for track in out.tracks:
        if not track.note_num():
            continue
        a = track.notes.numpy()
        v = np.clip(np.rint(a["velocity"] * factor), 1, 127).astype(np.int8)
        track.notes = symusic.Note.from_numpy(a["time"], a["duration"], a["pitch"], v)
    return out


def reduce_polyphony(score: symusic.Score, limit: int) -> symusic.Score:
    """Keep at most ``limit`` pitched notes sounding at any time; drums are left alone.

    At each onset, notes already sounding stay; among the new notes the lowest and highest
    (the bass and the top voice) are kept first, then the loudest. If the new bass or top note
    finds no room, the inner note that would otherwise keep sounding is cut short.
    """
    limit = max(limit, 2)
    out = score.copy()
    rows = []  # (track index, note index, time, end, pitch, velocity)
    for ti, track in enumerate(out.tracks):
        if track.is_drum or not track.note_num():
            continue
        a = track.notes.numpy()
        for ni in range(len(a["time"])):
            t, d = int(a["time"][ni]), int(a["duration"][ni])
            rows.append([ti, ni, t, t + d, int(a["pitch"][ni]), int(a["velocity"][ni])])
    rows.sort(key=lambda r: (r[2], r[4]))
    keep = np.ones(len(rows), bool)
    end = [r[3] for r in rows]
    active: list[int] = []
    i = 0
    while i < len(rows):
        t = rows[i][2]
        stop = i
        while stop < len(rows) and rows[stop][2] == t:
            stop += 1
        group, i = list(range(i, stop)), stop
        active = [j for j in active if end[j] > t]
        lo, hi = min(group, key=lambda j: rows[j][4]), max(group, key=lambda j: rows[j][4])
        others = sorted((j for j in group if j not in (lo, hi)), key=lambda j: -rows[j][5])
        chosen = []
        for j in [lo, hi] + others if lo != hi else [lo] + others:
            if len(active) + len(chosen) < limit:
                chosen.append(j)
            elif j in (lo, hi):  # the bass or the top voice: make room by cutting an inner note
                inner = sorted(active, key=lambda k: rows[k][4])[1:-1]
                if inner:
                    victim = inner[0]
                    end[victim] = t
                    active.remove(victim)
                    chosen.append(j)
                else:
                    keep[j] = False
            else:
                keep[j] = False
        active += chosen
    by_track: dict[int, list[int]] = {}
    for idx, row in enumerate(rows):
        if keep[idx] and end[idx] > row[2]:
            by_track.setdefault(row[0], []).append(idx)
        elif keep[idx]:
            keep[idx] = False
    for ti, track in enumerate(out.tracks):
        if track.is_drum or not track.note_num():
            continue
        idx = by_track.get(ti, [])
        sel = np.array(idx, dtype=np.int64)
        if not len(sel):
            track.notes = symusic.Note.from_numpy(
                *(np.zeros(0, dt) for dt in (np.int32, np.int32, np.int8, np.int8))
            )
            continue
        r = np.array([rows[k] for k in idx], np.int64)
        ends = np.array([end[k] for k in idx], np.int64)
        order = np.lexsort((r[:, 4], r[:, 2]))
        track.notes = symusic.Note.from_numpy(
            r[order, 2].astype(np.int32), (ends - r[:, 2])[order].astype(np.int32),
            r[order, 4].astype(np.int8), r[order, 5].astype(np.int8),
        )  # fmt: skip
    return out
