"""Score chord and key readings against the aligned expert analyses.

Every reading (ours, or music21's baseline) is a :class:`~aurl.analysis.baseline.Labels` at
the reference's compared moments, so both are counted by the same code: root accuracy,
root+quality accuracy, global and local key, the wrong roots by interval and the qualities
named where the analyst has a plain triad.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from aurl.analysis.baseline import Labels
from aurl.analysis.chords import QUALITY_NAMES, TRIAD_OF
from aurl.analysis.groundtruth import MIN_ALIGNED, Reference
from aurl.analysis.harmony import HarmonyParams, analyze_harmony
from aurl.analysis.key import key_name
from aurl.analysis.roman import roman_numeral

TRIADS = ("maj", "min", "dim", "aug")
SEVENTHS = ("dom7", "maj7", "min7", "hdim7", "dim7")
Reader = Callable[[Reference], Labels]


def aurl_reader(params: HarmonyParams | None = None) -> Reader:
    """Our analysis as a reader: the chord of the half beat and the local key of the beat
    holding each moment."""

    def read(ref: Reference) -> Labels:
        harmony = analyze_harmony(ref.piece, params)
        chords = harmony.half_beats
        at = np.searchsorted(chords.starts, ref.beats, side="right") - 1
        beat = np.searchsorted(harmony.beats, ref.beats, side="right") - 1
        quality = chords.quality[at]
        return Labels(
            root=chords.root[at],
            quality=[QUALITY_NAMES[q] if q >= 0 else "none" for q in quality],
            inversion=chords.inversion[at],
            local_key=harmony.local_key[beat],
            global_key=harmony.key.index,
        )

    return read


def baseline_reader(ref: Reference) -> Labels:
    """music21's ``chordify()`` + ``root()`` reading, computed when the reference was loaded."""
    return ref.baseline


def quality_family(quality: str) -> str:
    """``triad``, ``seventh``, ``sus4``, ``none`` or ``other``."""
    if quality in TRIADS:
        return "triad"
    if quality in SEVENTHS:
        return "seventh"
    return quality if quality in ("sus4", "none") else "other"


def evaluate(references: list[Reference], read: Reader | None = None) -> dict:
    """Key, root and root+quality accuracy of a reading against the references.

    Args:
        references: Aligned analyses (pieces aligned under ``MIN_ALIGNED`` count for the
            global key only).
        read: The reading to score (default: ours with default parameters).

    Returns:
        A dict with the headline figures, per-piece rows and the error breakdowns.
    """
    read = read or aurl_reader()
    totals: Counter = Counter()
    rows, excluded = [], []
    errors = {"root": Counter(), "quality": Counter(), "interval": Counter(), "triad": Counter()}
    for ref in references:
        labels = read(ref)
        key_ok = labels.global_key == ref.global_key
        totals.update(key=int(key_ok))
        if ref.aligned < MIN_ALIGNED:
            excluded.append({"piece": ref.name, "aligned": ref.aligned, "key_ok": bool(key_ok)})
            continue
        row = _score_piece(ref, labels, totals, errors)
        rows.append({**row, "key_found": key_name(labels.global_key), "key_ok": bool(key_ok)})
    n = max(totals["beats"], 1)
    triads = max(sum(errors["triad"].values()), 1)
    return {
        "pieces": len(references),
        "pieces_compared": len(rows),
        "excluded": excluded,
        "beats": totals["beats"],
        "key_correct": totals["key"],
        "root_accuracy": round(totals["root"] / n, 4),
        "root_quality_accuracy": round(totals["full"] / n, 4),
        "root_triad_quality_accuracy": round(totals["triad"] / n, 4),
        "local_key_accuracy": round(totals["local"] / n, 4),
        "per_piece": rows,
        "root_errors": [
            {"reference": a, "found": b, "beats": c} for (a, b), c in errors["root"].most_common(15)
        ],
        "root_error_intervals": {str(k): v for k, v in sorted(errors["interval"].items())},
        "quality_errors": [
            {"reference": a, "found": b, "beats": c}
            for (a, b), c in errors["quality"].most_common(10)
        ],
        "found_for_triads": {k: round(v / triads, 4) for k, v in sorted(errors["triad"].items())},
    }


def _score_piece(ref: Reference, labels: Labels, totals: Counter, errors: dict) -> dict:
    """Count one piece's moments into ``totals`` and ``errors``; return its row."""
    root, quality = labels.root, labels.quality
    pairs = list(zip(quality, ref.quality, strict=True))
    root_ok = root == ref.root
    full_ok = root_ok & np.array([a == b for a, b in pairs])
    triad_ok = root_ok & np.array([TRIAD_OF.get(a, a) == TRIAD_OF.get(b, b) for a, b in pairs])
    local_ok = labels.local_key == ref.key
    totals.update(
        beats=len(root),
        root=int(root_ok.sum()),
        full=int(full_ok.sum()),
        triad=int(triad_ok.sum()),
        local=int(local_ok.sum()),
    )
    errors["triad"].update(quality_family(a) for a, b in pairs if b in TRIADS)
    for i in np.flatnonzero(~full_ok):
        k = int(ref.key[i])
        mode = "major" if k < 12 else "minor"
        if root_ok[i]:
            errors["quality"][(ref.quality[i], quality[i])] += 1
            continue
        mine = roman_numeral(int(root[i]), quality[i], int(labels.inversion[i]), k % 12, mode)
        errors["root"][(ref.figure[i], mine)] += 1
        errors["interval"][int(root[i] - ref.root[i]) % 12 if root[i] >= 0 else -1] += 1
    return {
        "piece": ref.name,
        "key_reference": key_name(ref.global_key),
        "beats": len(root),
        "transposition": ref.transposition,
        "root": round(float(root_ok.mean()), 4),
        "root_quality": round(float(full_ok.mean()), 4),
        "local_key": round(float(local_ok.mean()), 4),
    }
