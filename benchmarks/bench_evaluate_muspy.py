"""Check our MusPy features against MusPy itself on the Bach chorales.

    python3 -m venv /tmp/muspy && /tmp/muspy/bin/pip install muspy==0.5.0
    .venv/bin/python benchmarks/bench_evaluate_muspy.py --muspy-python /tmp/muspy/bin/python

MusPy is not a dependency of Aurl, so it runs in its own environment (``--muspy-python``): it
reads each file, is set to our grid (12 steps per quarter) and computes its metrics; we read
the same file through our tokenizer. The table gives the largest and mean absolute
difference per feature; ``empty_beat_rate`` and ``groove_consistency`` differ on purpose
(see ``aurl.evaluate.features``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from common import machine_info, machine_markdown, write_results

NAMES = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "polyphony",
    "polyphony_rate",
    "scale_consistency",
    "pitch_entropy",
    "pitch_class_entropy",
    "empty_beat_rate",
    "groove_consistency",
)
MUSPY = """
import json, sys, muspy
files, bars = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
out = {}
for path in files:
    m = muspy.read_midi(path)
    m.adjust_resolution(12)
    out[path] = {name: float(getattr(muspy, name)(m)) for name in %r}
    out[path]["groove_consistency"] = float(muspy.groove_consistency(m, bars[path]))
json.dump(out, open(sys.argv[3], "w"))
"""


def main() -> None:
    from aurl.data.sources import bach_source
    from aurl.evaluate import features as F
    from aurl.evaluate.notes import ids_to_notes
    from aurl.midi import read_midi
    from aurl.tokens import Tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muspy-python", required=True, help="a Python with muspy installed")
    parser.add_argument("--files", type=int, default=100, help="chorales to compare")
    a = parser.parse_args()
    files = [str(p) for p in bach_source(progress=False).files[: a.files]]
    tokenizer = Tokenizer()
    ours, bars = {}, {}
    for path in files:
        n = ids_to_notes(tokenizer.encode(read_midi(path)), tokenizer.vocab)
        ours[path] = {name: float(F.FEATURES[name][0](n)) for name in NAMES}
        bars[path] = int(n.bar_starts[1] - n.bar_starts[0]) if n.num_bars > 1 else 48
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / name for name in ("files.json", "bars.json", "out.json")]
        paths[0].write_text(json.dumps(files))
        paths[1].write_text(json.dumps(bars))
        code = MUSPY % (NAMES[:-1],)
        subprocess.run([a.muspy_python, "-c", code, *map(str, paths)], check=True)
        theirs = json.loads(paths[2].read_text())
        version = subprocess.run(
            [a.muspy_python, "-c", "import muspy; print(muspy.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    table = {}
    for name in NAMES:
        diffs = [abs(ours[p][name] - theirs[p][name]) for p in files]
        same = sum(d < 1e-9 for d in diffs)
        table[name] = {
            "max_abs_diff": max(diffs),
            "mean_abs_diff": sum(diffs) / len(diffs),
            "identical_files": same,
        }
    info = machine_info(("aurl", "numpy", "symusic")) | {"muspy": version}
    rows = [
        f"| {k} | {v['max_abs_diff']:.3g} | {v['mean_abs_diff']:.3g} | "
        f"{v['identical_files']}/{len(files)} |"
        for k, v in table.items()
    ]
    md = [
        "# Our MusPy features against MusPy",
        "",
        f"{len(files)} Bach chorales; MusPy {version} with the resolution set to 12 steps per "
        "quarter, ours through the tokenizer's grid. `empty_beat_rate` and `groove_consistency` "
        "differ on purpose (a note ending on a beat line does not fill the next beat; bars are "
        "the piece's own, with no extra empty bar at the end). The few `polyphony` differences "
        "come from putting notes on the grid: in those files MusPy's `adjust_resolution` and "
        "symusic's `resample` round a few triplet-length durations to different steps (1 or 2).",
        "",
        "| feature | max abs diff | mean abs diff | identical |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        machine_markdown(info),
    ]
    write_results(
        "evaluate_muspy",
        {"files": len(files), "muspy": version, "features": table, "machine": info},
        "\n".join(md),
    )


if __name__ == "__main__":
    main()
