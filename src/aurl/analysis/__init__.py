"""Music analysis: key, harmony, structure and melody studies of a piece or a corpus.

The public functions load on first use, so that importing the ``analyze`` command (which
the CLI does at start-up) costs no numpy or matplotlib import.

Typical use::

    from aurl.analysis import analyze_file
    summary = analyze_file("piece.mid").summary   # JSON-ready dict
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Analysis": "aurl.analysis.analyze",
    "analyze_file": "aurl.analysis.analyze",
    "analyze_piece": "aurl.analysis.analyze",
    "Piece": "aurl.analysis.piece",
    "make_piece": "aurl.analysis.piece",
    "piece_from_score": "aurl.analysis.piece",
    "HarmonyParams": "aurl.analysis.harmony",
    "analyze_harmony": "aurl.analysis.harmony",
    "corpus_summary": "aurl.analysis.corpus",
    "piece_text": "aurl.analysis.report",
    "corpus_text": "aurl.analysis.report",
    "write_plots": "aurl.analysis.plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aurl.analysis' has no attribute {name!r}")
