"""Measure the key and chord analysis against the Roman-numeral analyses shipped with music21.

music21's corpus holds expert Roman-numeral analyses (``.rntxt``) of 20 Bach chorales. Each
is aligned with its score by measure number and beat: the score is parsed with music21 as
written (repeats not expanded, pickup bars kept as bar 0), so ``m4 b3`` in the analysis and
in the score are the same moment. Every beat of the score is compared: the reference chord is
the last one the analysis states at or before the beat.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurl.analysis.chords import QUALITIES, QUALITY_NAMES, TRIAD_OF
from aurl.analysis.chroma import chroma, overlaps
from aurl.analysis.harmony import HarmonyParams, analyze_harmony
from aurl.analysis.key import key_name
from aurl.analysis.piece import STEPS_PER_QUARTER, Piece
from aurl.analysis.roman import roman_numeral

MIN_ALIGNED = 0.85  # below this share of sounding reference roots, the versions differ
_QUALITY_OF_INTERVALS = {frozenset(iv): name for name, iv, _ in QUALITIES}


@dataclass(frozen=True)
class Reference:
    """One chorale and its expert analysis, aligned beat by beat.

    Attributes:
        name: ``bwv269`` and so on.
        piece: The score's notes and bars, as written.
        beats: Every beat start (steps) the analysis covers.
        root: Reference root pitch class at each beat.
        quality: Reference quality name at each beat (``"other"`` outside our set).
        key: Reference local key index at each beat.
        figure: Reference Roman numeral at each beat, as the analyst wrote it.
        global_key: Key index of the analysis's first key.
        transposition: Semitones the reference was moved to match the score (some analyses
            describe a transposed edition).
        aligned: Share of beats whose reference root sounds in the score; low values mean the
            analysis describes another version of the piece (see :func:`load_reference`).
    """

    name: str
    piece: Piece
    beats: np.ndarray
    root: np.ndarray
    quality: list[str]
    key: np.ndarray
    figure: list[str]
    global_key: int
    transposition: int = 0
    aligned: float = 1.0


def analysis_files() -> list[Path]:
    """The ``.rntxt`` chorale analyses in music21's corpus, sorted."""
    import music21

    folder = Path(music21.__file__).parent / "corpus" / "bach" / "choraleAnalyses"
    return sorted(folder.glob("*.rntxt"))


def score_name(rntxt: Path) -> str:
    """The corpus name of the score an analysis describes (``248(2).12`` -> ``bwv248.12-2``)."""
    match = re.search(r"^BWV:\s*(\S+)", rntxt.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise ValueError(f"{rntxt.name}: no BWV line in the header")
    bwv = match.group(1).rstrip("abcdefghijklmnopqrstuvwxyz")
    part = re.fullmatch(r"(\d+)\((\d+)\)\.(\d+)", bwv)
    if part:
        bwv = f"{part.group(1)}.{part.group(3)}-{part.group(2)}"
    return f"bwv{bwv}"


def _key_index(key) -> int:
    return key.tonic.pitchClass + (12 if key.mode == "minor" else 0)


def _quality(rn) -> str:
    root = rn.root().pitchClass
    intervals = frozenset((pc - root) % 12 for pc in rn.pitchClasses)
    return _QUALITY_OF_INTERVALS.get(intervals, "other")


def piece_from_music21(score, name: str, spq: int = STEPS_PER_QUARTER) -> tuple[Piece, dict]:
    """A Piece from a music21 score as written, and ``{measure number: (start, beat)}`` in steps.

    Bars start where the score's measures start; a pickup measure starts before 0.
    """
    flat = score.stripTies().flatten()
    time, dur, pitch = [], [], []
    for n in flat.notes:
        for p in n.pitches:
            time.append(round(float(n.offset) * spq))
            dur.append(max(1, round(float(n.quarterLength) * spq)))
            pitch.append(p.midi)
    measures = {}
    starts, beats = [], []
    ts = None
    for m in score.parts[0].getElementsByClass("Measure"):
        ts = m.timeSignature or ts or m.getContextByClass("TimeSignature")
        start = round((float(m.offset) - float(m.paddingLeft)) * spq)
        beat = round(float(ts.beatDuration.quarterLength) * spq) if ts else spq
        if m.number not in measures:
            measures[m.number] = (start, beat)
        if not starts or start > starts[-1]:
            starts.append(start)
            beats.append(beat)
    t, d, p = (np.asarray(x, np.int64) for x in (time, dur, pitch))
    order = np.lexsort((p, t))
    first_number = min(measures) if measures else 1
    piece = Piece(
        name,
        t[order],
        d[order],
        p[order],
        np.full(len(t), 80, np.int64),
        spq,
        np.asarray(starts, np.int64),
        np.asarray(beats, np.int64),
        first_number,
    )
    return piece, measures


def load_reference(rntxt: Path) -> Reference:
    """Parse one analysis and its score with music21 and align them beat by beat."""
    from music21 import converter, corpus, roman

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = converter.parse(str(rntxt), format="romanText")
        name = score_name(rntxt)
        piece, measures = piece_from_music21(corpus.parse(f"bach/{name}"), name)
        events = []
        for rn in analysis.recurse().getElementsByClass(roman.RomanNumeral):
            if rn.measureNumber not in measures:
                continue
            start, beat = measures[rn.measureNumber]
            when = start + round((float(rn.beat) - 1) * beat)
            events.append((when, rn.root().pitchClass, _quality(rn), _key_index(rn.key), rn.figure))
    events.sort(key=lambda e: e[0])
    times = np.array([e[0] for e in events], np.int64)
    beats = piece.beat_starts()
    beats = beats[beats >= times[0]]
    idx = np.searchsorted(times, beats, side="right") - 1
    root = np.array([events[i][1] for i in idx], np.int64)
    key = np.array([events[i][3] for i in idx], np.int64)
    shift, aligned = _transposition(piece, beats, root)
    return Reference(
        name=name,
        piece=piece,
        beats=beats,
        root=(root + shift) % 12,
        quality=[events[i][2] for i in idx],
        key=(key + shift) % 12 + 12 * (key >= 12),
        figure=[events[i][4] for i in idx],
        global_key=(events[0][3] + shift) % 12 + 12 * (events[0][3] >= 12),
        transposition=shift,
        aligned=aligned,
    )


def _transposition(piece: Piece, beats: np.ndarray, root: np.ndarray) -> tuple[int, float]:
    """The shift of the reference roots that makes them sound most often in the score.

    Returns:
        ``(semitones, share of beats whose shifted root sounds)``.
    """
    weights = chroma(piece, overlaps(piece, np.append(beats, max(piece.end, beats[-1] + 1))))
    sounding = weights > 0
    rows = np.arange(len(beats))
    share = np.array([sounding[rows, (root + s) % 12].mean() for s in range(12)])
    best = int(np.argmax(share))
    return best, round(float(share[best]), 4)


def load_references() -> list[Reference]:
    """All 20 chorale analyses, aligned with their scores."""
    return [load_reference(path) for path in analysis_files()]


def evaluate(references: list[Reference], params: HarmonyParams | None = None) -> dict:
    """Key, root and root+quality accuracy of our analysis against the references.

    Returns:
        A dict with the headline figures, per-chorale rows and the commonest errors.
    """
    rows, root_errors, quality_errors = [], Counter(), Counter()
    totals = Counter()
    excluded = []
    intervals: Counter = Counter()  # found root - reference root, for the root errors
    for ref in references:
        harmony = analyze_harmony(ref.piece, params)
        key_ok = harmony.key.index == ref.global_key
        totals.update(key=int(key_ok))
        if ref.aligned < MIN_ALIGNED:
            excluded.append({"chorale": ref.name, "aligned": ref.aligned, "key_ok": bool(key_ok)})
            continue
        at = np.searchsorted(harmony.beats, ref.beats, side="right") - 1
        root = harmony.chords.root[at]
        quality = [QUALITY_NAMES[q] if q >= 0 else "none" for q in harmony.chords.quality[at]]
        inversion = harmony.chords.inversion[at]
        root_ok = root == ref.root
        full_ok = root_ok & np.array([a == b for a, b in zip(quality, ref.quality, strict=True)])
        triad_ok = root_ok & np.array(
            [
                TRIAD_OF.get(a, a) == TRIAD_OF.get(b, b)
                for a, b in zip(quality, ref.quality, strict=True)
            ]
        )
        local_ok = harmony.local_key[at] == ref.key
        totals.update(
            beats=len(at),
            root=int(root_ok.sum()),
            full=int(full_ok.sum()),
            triad=int(triad_ok.sum()),
            local=int(local_ok.sum()),
        )
        for i in np.flatnonzero(~full_ok):
            k = int(ref.key[i])
            mine = roman_numeral(
                int(root[i]), quality[i], int(inversion[i]), k % 12, "major" if k < 12 else "minor"
            )
            if root_ok[i]:
                quality_errors[(ref.quality[i], quality[i])] += 1
            else:
                root_errors[(ref.figure[i], mine)] += 1
                interval = int(root[i] - ref.root[i]) % 12 if root[i] >= 0 else -1
                intervals[interval] += 1
        rows.append(
            {
                "chorale": ref.name,
                "key_reference": key_name(ref.global_key),
                "key_found": harmony.key.name,
                "key_ok": bool(key_ok),
                "beats": len(at),
                "transposition": ref.transposition,
                "root": round(float(root_ok.mean()), 4),
                "root_quality": round(float(full_ok.mean()), 4),
                "local_key": round(float(local_ok.mean()), 4),
            }
        )
    n = max(totals["beats"], 1)
    return {
        "chorales": len(references),
        "chorales_compared": len(rows),
        "excluded": excluded,
        "beats": totals["beats"],
        "key_correct": totals["key"],
        "root_accuracy": round(totals["root"] / n, 4),
        "root_quality_accuracy": round(totals["full"] / n, 4),
        "root_triad_quality_accuracy": round(totals["triad"] / n, 4),
        "local_key_accuracy": round(totals["local"] / n, 4),
        "per_chorale": rows,
        "root_errors": [
            {"reference": a, "found": b, "beats": c} for (a, b), c in root_errors.most_common(15)
        ],
        "root_error_intervals": {str(k): v for k, v in sorted(intervals.items())},
        "quality_errors": [
            {"reference": a, "found": b, "beats": c} for (a, b), c in quality_errors.most_common(10)
        ],
    }
