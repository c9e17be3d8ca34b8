"""Write an evaluation report folder: report.json, report.md, plots and the sample MIDI files.

The folder is built beside its destination and renamed into place, so it appears whole or
not at all. An existing folder is replaced only if it is itself an evaluation report.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aurl.fileio import atomic_dir

if TYPE_CHECKING:
    from aurl.evaluate.run import Evaluation

JSON, MARKDOWN = "report.json", "report.md"


def clean(value):
    """JSON-ready copy: floats rounded to 6 decimals, NaN and infinities as None."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return clean(value.item())
    return value


def write_report(result: Evaluation, out: str | Path, plots: bool = True) -> Path:
    """Write an evaluation into the folder ``out``: report.json, report.md, the figures and
    the generated samples as ``samples/*.mid``.

    Args:
        result: the :class:`aurl.evaluate.run.Evaluation` to write; the time spent on the
            figures is added to its report's ``timing``.
        out: the report folder.
        plots: draw the PNG figures.

    Raises:
        ValueError: ``out`` exists and is not an evaluation report folder.
    """
    from aurl.midi import write_midi

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / JSON).is_file())):
        raise ValueError(f"{out}: exists and is not an evaluation report; choose another --out")
    started = time.perf_counter()
    data = clean(result.report)
    with atomic_dir(out) as tmp:
        for row, piece in zip(data["pieces"]["generated"], result.pieces or [], strict=False):
            write_midi(piece.score, tmp / "samples" / f"{row['name']}.mid")
        data["figures"] = []
        if plots:
            from aurl.evaluate.plots import draw_all

            data["figures"] = draw_all(data, result.notes, tmp)
        spent = time.perf_counter() - started
        timing = data["timing"]
        timing["report"] = round(spent, 3)
        timing["total"] = round(timing.pop("total") + spent, 3)
        result.report["timing"] = dict(timing)
        (tmp / JSON).write_text(json.dumps(data, indent=1) + "\n")
        (tmp / MARKDOWN).write_text(markdown(data))
    return out


def _f(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]


def _mean_std(summary: dict) -> str:
    if summary["mean"] is None:
        return "n/a"
    if isinstance(summary["mean"], list):
        shape = (len(summary["mean"]),) + (
            (len(summary["mean"][0]),) if isinstance(summary["mean"][0], list) else ()
        )
        return "(" + " x ".join(map(str, shape)) + " values)"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def markdown(r: dict) -> str:
    """The readable summary of a report dict (after :func:`clean`)."""
    gen, ref = r["sets"]["generated"], r["sets"]["reference"]
    lines = ["# Evaluation report", ""]
    if r["mode"] == "model":
        m = r["model"]
        evaluated_on = m.get("evaluated_on", m["data_source"])
        lines += [
            f"Model `{m['path']}` ({m['parameters']:,} parameters), trained on "
            f"`{m['data_source']}`; test split of `{evaluated_on}`, dataset `{m['dataset']}`"
            + (
                " (**differs from the training data fingerprint**)"
                if evaluated_on == m["data_source"] and not m["dataset_matches_training"]
                else ""
            )
            + ".",
            "",
        ]
        o = r["options"]
        lines += [
            f"{gen['pieces']} samples of {o['bars']} bars (seed {o['seed']}, temperature "
            f"{o['temperature']}, top-p {o['top_p']}) against {ref['pieces']} test pieces "
            f"cut to their first {o['bars']} bars.",
            "",
        ]
        g = r["generation"]
        if g["truncated"]:
            lines += [
                f"**{g['truncated']} samples were cut at {g['token_budget']['hard']} tokens** (the "
                f"most any {o['bars']} bars of the train split take) before "
                "finishing their bars.",
                "",
            ]
        lines += _likelihood(r["likelihood"]) + _validity(r["validity"])
    else:
        lines += [
            f"`{r['files']}` ({gen['pieces']} files) against `{r['reference']}` "
            f"({ref['pieces']} files).",
            "",
        ]
        for s in (gen, ref):
            if s["skipped"]:
                lines += [f"{s['label']}: {len(s['skipped'])} unreadable files skipped.", ""]
    lines += _features(r) + _memorization(r) + _diversity(r)
    if r.get("controls"):
        from aurl.evaluate.controls_eval import controls_markdown

        lines += controls_markdown(r["controls"])
    if r.get("figures"):
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in r["figures"]] + [""]
    t = r["timing"]
    lines += ["## Timing", "", ", ".join(f"{k} {v:.1f} s" for k, v in t.items()), ""]
    return "\n".join(lines)


def _likelihood(lk: dict) -> list[str]:
    rows = [
        [name, lk[key]["nll_per_token"], lk[key]["bits_per_token"], lk[key]["perplexity"]]
        for name, key in (
            ("model", "model"),
            (f"{lk['ngram']['order']}-gram (Kneser–Ney)", "ngram"),
            ("uniform", "uniform"),
        )
    ]
    return (
        [
            "## Likelihood on the test split",
            "",
            f"{lk['model']['tokens']:,} predicted tokens in {lk['test_pieces']} pieces.",
            "",
        ]
        + _table(["model", "NLL (nats/token)", "bits/token", "perplexity"], rows)
        + [""]
    )


def _validity(v: dict) -> list[str]:
    lines = ["## Grammar validity without the mask", ""]
    if not v["samples"]:
        return lines + ["Not measured.", ""]
    lines += [
        f"{v['valid']} of {v['samples']} samples drawn without the grammar mask are "
        f"valid ({100 * v['valid_rate']:.1f}%); on average the first violation comes "
        f"after {v['tokens_before_first_violation_mean']:.0f} tokens.",
        "",
    ]
    if v["violations"]:
        lines += _table(
            ["first violation", "samples"], [[k, n] for k, n in v["violations"].items()]
        )
        lines.append("")
    return lines


def _features(r: dict) -> list[str]:
    lines = [
        "## Features (generated vs reference)",
        "",
        "OA and KL compare the reference's intra-set distance distribution with the "
        "inter-set one (Yang & Lerch 2018): OA near 1 and KL near 0 mean the generated "
        "pieces are as close to the reference as reference pieces are to each other. "
        f"Mean OA {_f(r['overall']['mean_oa'])}, mean KL {_f(r['overall']['mean_kl'])}.",
        "",
    ]
    rows = [
        [name, f["source"], _mean_std(f["generated"]), _mean_std(f["reference"]), f["oa"], f["kl"]]
        for name, f in r["features"].items()
    ]
    return lines + _table(["feature", "from", "generated", "reference", "OA", "KL"], rows) + [""]


def _memorization(r: dict) -> list[str]:
    m = r["memorization"]
    s = m["summary"]
    base = m["reference_baseline"]
    lines = [
        "## Memorization",
        "",
        f"Copies from the {m['against']}, transposition-aware. A sample is flagged when at "
        f"least {100 * m['threshold']:.0f}% of its {m['window_bars']}-bar windows occur "
        "verbatim there."
        + (
            " The reference column measures the test pieces the same way, as a baseline."
            if base
            else ""
        ),
        "",
    ]
    keys = [
        ("longest copied run of notes (median)", "longest_notes_median"),
        ("longest copied run of notes (max)", "longest_notes_max"),
        ("longest copied run of bars (median)", "longest_bars_median"),
        ("longest copied run of bars (max)", "longest_bars_max"),
        ("share of windows found (mean)", "window_share_mean"),
        ("flagged pieces", "flagged"),
    ]
    header = ["measure", "generated"] + (["reference"] if base else [])
    rows = [[label, s[k]] + ([base[k]] if base else []) for label, k in keys]
    lines += _table(header, rows) + [""]
    if m["flagged"]:
        names = [r["pieces"]["generated"][i]["name"] for i in m["flagged"]]
        lines += ["Flagged: " + ", ".join(names), ""]
    return lines


def _diversity(r: dict) -> list[str]:
    d = r["diversity"]
    rows = [
        [label, d["generated"][k], d["reference"][k]]
        for label, k in (
            ("mean Jaccard distance of bar sets", "bar_jaccard_distance_mean"),
            ("pairs sharing a window", "pairs_sharing_window"),
            ("identical pairs", "identical_pairs"),
        )
    ]
    ratio = d.get("feature_spread_ratio")
    note = (
        []
        if ratio is None
        else [
            f"Mean feature distance between two generated pieces is {ratio:.2f} times that between "
            "two reference pieces (averaged over the features; below 1: the samples are more "
            "alike than the reference pieces).",
            "",
        ]
    )
    return ["## Diversity", ""] + note + _table(["measure", "generated", "reference"], rows) + [""]
