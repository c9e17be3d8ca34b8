"""Statistics over many analysed pieces: keys, chord transitions, progressions, motifs, forms."""

from __future__ import annotations

from collections import Counter

from aurl.analysis.progressions import common_progressions, transition_counts


def corpus_summary(summaries: list[dict], skipped: list[dict] | None = None) -> dict:
    """Combine per-piece summaries (see :func:`aurl.analysis.analyze.analyze_piece`).

    Args:
        summaries: The ``summary`` of every analysed piece.
        skipped: ``{"file", "reason"}`` for files that could not be analysed.

    Returns:
        A JSON-ready dict: piece count, key and mode distributions, chord transition matrix
        over Roman numerals, common progressions, cadence and form counts, and the motifs
        (interval patterns) found in the most pieces.
    """
    keys = Counter(s["key"]["global"]["name"] for s in summaries)
    modes = Counter(s["key"]["global"]["mode"] for s in summaries)
    sequences = [s["harmony"]["progression"] for s in summaries]
    cadences = Counter(c["type"] for s in summaries for c in s["harmony"]["cadences"])
    forms = Counter(s["structure"]["form"] for s in summaries)
    motif_pieces: Counter = Counter()
    motif_occurrences: Counter = Counter()
    for s in summaries:
        seen = set()
        for m in s["melody"]["motifs"]:
            pattern = tuple(m["intervals"])
            motif_occurrences[pattern] += m["count"]
            seen.add(pattern)
        motif_pieces.update(seen)
    contours = Counter(s["melody"]["contour"] for s in summaries)
    return {
        "pieces": len(summaries),
        "skipped": skipped or [],
        "keys": dict(keys.most_common()),
        "modes": dict(modes.most_common()),
        "modulations_per_piece": round(
            sum(s["key"]["modulations"] for s in summaries) / max(len(summaries), 1), 3
        ),
        "chord_transitions": transition_counts(sequences, top=16),
        "common_progressions": common_progressions(sequences, top=10),
        "cadences": dict(cadences.most_common()),
        "forms": dict(forms.most_common(20)),
        "contours": dict(contours.most_common()),
        "motifs": [
            {"intervals": list(p), "pieces": n, "occurrences": motif_occurrences[p]}
            for p, n in motif_pieces.most_common(15)
        ],
    }
