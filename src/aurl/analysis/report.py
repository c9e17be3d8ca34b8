"""Plain-text summaries of a piece's and a corpus's analysis, for the terminal."""

from __future__ import annotations


def _at(position: dict) -> str:
    beat = position["beat"]
    beat_text = f"{beat:g}"
    return f"m{position['bar']} b{beat_text}"


def piece_text(summary: dict, max_chords: int = 16) -> str:
    """A short report of one piece (see :func:`aurl.analysis.analyze.analyze_piece`)."""
    key = summary["key"]
    harmony = summary["harmony"]
    structure = summary["structure"]
    melody = summary["melody"]
    meter = summary["meter"]
    g = key["global"]
    lines = [
        f"{summary['piece']}: {meter['bars']} bars, {meter['notes']} notes",
        f"  key       {g['name']} (r={g['correlation']:.2f}, margin {g['confidence']:.2f})",
    ]
    if key["modulations"]:
        path = " -> ".join(f"{seg['key']} @{_at(seg['start'])}" for seg in key["local"][:8])
        more = " ..." if len(key["local"]) > 8 else ""
        lines.append(f"  local     {path}{more}")
    chords = " ".join(c["numeral"] for c in harmony["chords"][:max_chords])
    more = " ..." if len(harmony["chords"]) > max_chords else ""
    lines.append(f"  chords    {chords}{more}")
    top = harmony["common_progressions"].get("3", [])[:3]
    if top:
        lines.append(
            "  common    " + ", ".join(f"{'-'.join(p['chords'])} x{p['count']}" for p in top)
        )
    if harmony["cadences"]:
        cads = ", ".join(f"{c['type']} @{_at(c['position'])}" for c in harmony["cadences"][:6])
        more = " ..." if len(harmony["cadences"]) > 6 else ""
        lines.append(f"  cadences  {cads}{more}")
    sections = " ".join(
        f"{s['label']}({s['start_bar']}-{s['end_bar']})" for s in structure["sections"]
    )
    lines.append(f"  form      {structure['form']}: {sections}")
    lines.append(
        f"  phrases   {len(structure['phrases'])}; climax at bar {structure['climax']['bar']}"
    )
    lines.append(
        f"  melody    {melody['contour']}, range {melody['range'][0]}-{melody['range'][1]}, "
        f"{melody['scale']['name']} ({melody['scale']['coverage']:.0%} in scale)"
    )
    if melody["motifs"]:
        m = melody["motifs"][0]
        where = ", ".join(_at(p) for p in m["positions"][:4])
        lines.append(f"  motif     {m['intervals']} x{m['count']} at {where}")
    return "\n".join(lines)


def corpus_text(corpus: dict) -> str:
    """A short report of a corpus summary (see :func:`aurl.analysis.corpus.corpus_summary`)."""
    keys = ", ".join(f"{k} {n}" for k, n in list(corpus["keys"].items())[:6])
    modes = ", ".join(f"{k} {n}" for k, n in corpus["modes"].items())
    lines = [
        f"corpus: {corpus['pieces']} pieces"
        + (f", {len(corpus['skipped'])} skipped" if corpus["skipped"] else ""),
        f"  keys      {keys}",
        f"  modes     {modes}; {corpus['modulations_per_piece']} modulations per piece",
    ]
    for n in ("2", "3", "4"):
        top = corpus["common_progressions"].get(n, [])[:4]
        if top:
            text = ", ".join(f"{'-'.join(p['chords'])} x{p['count']}" for p in top)
            lines.append(f"  {n}-chord   {text}")
    cads = ", ".join(f"{k} {n}" for k, n in corpus["cadences"].items())
    lines.append(f"  cadences  {cads or 'none'}")
    forms = ", ".join(f"{k} {n}" for k, n in list(corpus["forms"].items())[:5])
    lines.append(f"  forms     {forms}")
    if corpus["motifs"]:
        m = corpus["motifs"][0]
        lines.append(f"  motif     {m['intervals']} in {m['pieces']} pieces")
    return "\n".join(lines)
