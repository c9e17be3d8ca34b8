"""PNG plots of an analysis: chords over a piano roll, and the bar self-similarity matrix.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no
display needed) and written atomically.
"""

from __future__ import annotations

import io
import os

import numpy as np

from aurl.analysis.analyze import Analysis
from aurl.analysis.key import key_name
from aurl.fileio import atomic_write_bytes

_ROLL_RESOLUTION = 4  # piano-roll columns per quarter note
_MAX_LABELS = 160  # chord labels drawn at most (every k-th beyond that)


def _label_subset(n: int, limit: int) -> range:
    return range(0, n, max(1, -(-n // limit)))


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def chords_png(analysis: Analysis) -> bytes:
    """Piano roll of the notes with the chord numerals above and the local keys below."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    piece, harmony = analysis.piece, analysis.harmony
    spq = piece.steps_per_quarter
    step = max(spq // _ROLL_RESOLUTION, 1)
    lo, hi = int(piece.pitch.min()) - 1, int(piece.pitch.max()) + 2
    cols = piece.end // step + 1
    roll = np.zeros((hi - lo, cols))
    for t, d, p, v in zip(
        piece.time // step,
        np.maximum(piece.duration // step, 1),
        piece.pitch,
        piece.velocity,
        strict=True,
    ):
        roll[p - lo, t : t + d] = max(v, 1)
    quarters = piece.end / spq
    width = float(np.clip(quarters * 0.18, 8, 40))
    fig = Figure(figsize=(width, 5.5))
    ax = fig.add_axes((0.05, 0.18, 0.93, 0.62))
    ax.imshow(
        roll,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        interpolation="nearest",
        extent=(0, cols * step / spq, lo, hi),
    )
    ax.vlines(piece.bar_starts[piece.bar_starts >= 0] / spq, lo, hi, color="#9ab", lw=0.5)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    ax.set_xlim(0, quarters)
    chords = analysis.summary["harmony"]["chords"]
    starts = np.array([c["start"]["quarter"] for c in chords])
    ax.vlines(starts, lo, hi, color="#e87", lw=0.4, alpha=0.6)
    for i in _label_subset(len(chords), _MAX_LABELS):
        ax.text(
            starts[i],
            hi + 0.5 + (i % 2) * 2.2,
            chords[i]["numeral"],
            fontsize=7,
            va="bottom",
            clip_on=False,
        )
    band = fig.add_axes((0.05, 0.04, 0.93, 0.05))
    keys = harmony.local_key
    edges = np.append(harmony.beats, piece.end) / spq
    change = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], change])
    ends = np.append(change, len(keys))
    cmap = colormaps["tab20"]
    for a, b in zip(starts, ends, strict=True):
        k = int(keys[a])
        band.axvspan(edges[a], edges[b], color=cmap(k % 20), alpha=0.8)
        band.text(edges[a], 0.5, key_name(k), fontsize=7, va="center")
    band.set_yticks([])
    band.set_xticks([])
    band.set_xlim(0, quarters)
    fig.suptitle(f"{piece.name}: chords in {harmony.key.name}", y=0.98)
    return _png(fig)


def similarity_png(analysis: Analysis) -> bytes:
    """The bar self-similarity matrix with the form sections marked."""
    from matplotlib.figure import Figure

    sim = analysis.similarity
    n = len(sim)
    first = analysis.piece.first_bar_number
    fig = Figure(figsize=(6.5, 6))
    ax = fig.add_axes((0.1, 0.08, 0.78, 0.82))
    image = ax.imshow(
        sim,
        origin="lower",
        cmap="magma",
        vmin=0,
        vmax=1,
        extent=(first - 0.5, first + n - 0.5, first - 0.5, first + n - 0.5),
    )
    for s in analysis.sections:
        a, b = s.start + first - 0.5, s.end + first - 0.5
        ax.plot([a, b, b, a, a], [a, a, b, b, a], color="cyan", lw=1.2)
        ax.text(
            (a + b) / 2,
            b + 0.2,
            s.label,
            color="black",
            ha="center",
            va="bottom",
            fontsize=10,
            fontweight="bold",
            clip_on=False,
        )
    ax.set_xlabel("bar")
    ax.set_ylabel("bar")
    form = analysis.summary["structure"]["form"]
    ax.set_title(f"{analysis.piece.name}: bar self-similarity, form {form}", pad=18)
    cax = fig.add_axes((0.9, 0.08, 0.025, 0.82))
    fig.colorbar(image, cax=cax)
    return _png(fig)


def write_plots(analysis: Analysis, out_dir: str | os.PathLike) -> list[str]:
    """Write ``<piece>.chords.png`` and ``<piece>.similarity.png``; return their paths."""
    from pathlib import Path

    out = Path(out_dir)
    paths = []
    for suffix, draw in (("chords", chords_png), ("similarity", similarity_png)):
        path = out / f"{analysis.piece.name}.{suffix}.png"
        atomic_write_bytes(path, draw(analysis))
        paths.append(str(path))
    return paths
