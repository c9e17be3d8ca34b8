"""Figures of an evaluation report (matplotlib, Agg backend): feature histograms of both sets,
the distance densities behind OA, OA per feature, and piano rolls of a few samples."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from aurl.evaluate.compare import distance_densities, intra_distances, pairwise_distances
from aurl.evaluate.features import pianoroll, set_features
from aurl.evaluate.notes import Notes

COLORS = {"generated": "tab:orange", "reference": "tab:blue", "inter": "tab:green"}
ROLLS = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(count: int, cols: int = 4):
    plt = _pyplot()
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    fig.subplots_adjust(left=0.04, right=0.98, bottom=0.05, top=0.95, wspace=0.25, hspace=0.45)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes.flat


def feature_histograms(gen: dict, ref: dict, path: Path) -> None:
    """Density histograms of every scalar feature, both sets overlaid."""
    names = [k for k, v in gen.items() if v.ndim == 1 and not np.isnan(v).all()]
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names, strict=False):
        g, r = gen[name][~np.isnan(gen[name])], ref[name][~np.isnan(ref[name])]
        both = np.concatenate([g, r])
        lo, hi = both.min(), both.max()
        bins = np.linspace(lo - 0.5, hi + 0.5, 21) if hi == lo else np.linspace(lo, hi, 21)
        for label, values in (("reference", r), ("generated", g)):
            density = np.histogram(values, bins, density=True)[0]
            ax.stairs(density, bins, fill=True, alpha=0.5, color=COLORS[label], label=label)
        _small(ax, name)
    axes[0].legend(fontsize=7)
    _save(fig, path)


def distance_plots(gen: dict, ref: dict, path: Path) -> None:
    """Per feature: densities of intra-set (both sets) and inter-set distances."""
    names, curves = [], []
    for name in gen:
        g = gen[name][~np.isnan(gen[name].reshape(len(gen[name]), -1)).any(1)]
        r = ref[name][~np.isnan(ref[name].reshape(len(ref[name]), -1)).any(1)]
        if len(g) < 2 or len(r) < 2:
            continue
        dens = distance_densities(
            intra_distances(r), intra_distances(g), pairwise_distances(g, r).ravel()
        )
        if dens is not None:
            names.append(name)
            curves.append(dens)
    fig, axes = _grid(len(names))
    for ax, name, (grid, pdf) in zip(axes, names, curves, strict=False):
        ax.plot(grid, pdf["intra_reference"], color=COLORS["reference"], label="intra reference")
        ax.plot(grid, pdf["intra_generated"], color=COLORS["generated"], label="intra generated")
        ax.plot(grid, pdf["inter"], color=COLORS["inter"], label="inter", linestyle="--")
        _small(ax, name)
    if names:
        axes[0].legend(fontsize=6)
    _save(fig, path)


def oa_bars(features: dict, path: Path) -> None:
    """Horizontal bars: OA per feature (higher is closer to the reference)."""
    plt = _pyplot()
    items = [(k, v["oa"]) for k, v in features.items() if v["oa"] is not None]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color=COLORS["generated"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("overlapped area (intra-reference vs inter-set)")
    ax.tick_params(labelsize=8)
    _save(fig, path, tight=True)


def piano_rolls(pieces: list[Notes], names: list[str], path: Path) -> None:
    """Piano rolls of the first few pieces, with bar lines."""
    plt = _pyplot()
    shown = pieces[:ROLLS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 2.2 * len(shown)), squeeze=False)
    for ax, notes, name in zip(axes.flat, shown, names, strict=False):
        roll = pianoroll(notes)
        if roll.size and roll.any():
            used = np.flatnonzero(roll.any(0))
            lo, hi = max(used.min() - 2, 0), min(used.max() + 3, 128)
            ax.imshow(
                roll[:, lo:hi].T,
                origin="lower",
                aspect="auto",
                cmap="Greys",
                interpolation="nearest",
                extent=(0, len(roll), lo, hi),
            )
            for start in notes.bar_starts:
                ax.axvline(start, color="tab:red", linewidth=0.5, alpha=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("pitch", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[-1].set_xlabel(
        f"time (steps of 1/{shown[0].steps_per_quarter} quarter)" if shown else "time"
    )
    _save(fig, path, tight=True)


def _small(ax, title: str) -> None:
    """Title, a few x ticks, no y ticks (densities): text is most of the drawing time."""
    ax.set_title(title, fontsize=9)
    ax.set_yticks([])
    ax.locator_params(axis="x", nbins=4)
    ax.tick_params(labelsize=7)


def _save(fig, path: Path, tight: bool = False) -> None:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=80)
    _pyplot().close(fig)


def draw_all(report: dict, notes: dict[str, list[Notes]], folder: Path) -> list[str]:
    """Draw every figure into ``folder``; return the file names written."""
    gen, ref = set_features(notes["generated"]), set_features(notes["reference"])
    names = [row["name"] for row in report["pieces"]["generated"]]
    jobs = {
        "features.png": lambda p: feature_histograms(gen, ref, p),
        "distances.png": lambda p: distance_plots(gen, ref, p),
        "oa.png": lambda p: oa_bars(report["features"], p),
        "pianorolls.png": lambda p: piano_rolls(notes["generated"], names, p),
    }
    for file, draw in jobs.items():
        draw(folder / file)
    return list(jobs)
