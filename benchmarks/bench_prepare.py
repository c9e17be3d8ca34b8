"""Preparation speed and memory: aurl prepare against MidiTok 3.1.0 REMI and symusic's parse.

Every tool works from the files on disk. ``aurl prepare`` (read, repair, deduplicate, encode
in worker processes, write shards, manifest and report) runs with 1 and 2 workers into a
fresh temporary dataset folder each time, so its cache never answers. MidiTok REMI,
configured like our vocabulary, reads and tokenizes the same files in this process;
symusic's bare parse of the same files is the ceiling.

Each run is timed in wall-clock seconds and in CPU seconds (this process plus its workers),
since on a shared machine wall time mostly measures the neighbours. prepare has a fixed cost
(starting worker processes, fingerprinting) that 409 small files do not hide, so it also runs over
ten times the corpus (the chorales plus nine transposed copies of each: distinct content for
the duplicate check); its steady cost is the difference, (10N - N) files over
(cost at 10N - cost at N). Peak memory (peak RSS of the process running prepare and of its
largest worker) is measured for N and 10N files in a fresh child process each.

    .venv/bin/python benchmarks/bench_prepare.py [--repeats 3] [--limit N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import symusic

from aurl.data.prepare import prepare
from aurl.data.sources import bach_source, folder_source
from common import machine_info, machine_markdown, write_results

PACKAGES = ("aurl", "torch", "numpy", "symusic", "miditok")
SHIFTS = (-5, -4, -3, -2, -1, 1, 2, 3, 4)  # nine transposed copies: ten times the corpus


def replicate(files: list[Path], folder: Path) -> Path:
    """The files plus a transposed copy of each for every shift in SHIFTS."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        (folder / path.name).write_bytes(path.read_bytes())
        score = symusic.Score(str(path))
        for shift in SHIFTS:
            score.shift_pitch(shift).dump_midi(str(folder / f"{path.stem}_t{shift:+d}.mid"))
    return folder


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_runs(fn, repeats: int) -> tuple[dict, object]:
    """Best wall and CPU seconds of ``repeats`` calls of ``fn``, and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return {"wall_s": walls, "cpu_s": cpus, "best_wall_s": min(walls),
            "best_cpu_s": min(cpus)}, result  # fmt: skip


def time_prepare(folder: Path, workers: int, repeats: int, **options) -> dict:
    """prepare over ``folder`` into a fresh dataset folder each time."""

    def once() -> dict:
        with tempfile.TemporaryDirectory() as root:
            dataset = prepare(folder_source(folder), workers=workers, progress=False,
                              root=Path(root), **options)  # fmt: skip
            return dataset.manifest

    run, manifest = timed_runs(once, repeats)
    report, splits = manifest["report"], manifest["splits"].values()
    return run | {
        "workers": workers,
        "files": report["files"],
        "used": report["used"],
        "duplicates": report["duplicates"],
        "repaired": report["repaired"],
        "notes": sum(s["notes"] for s in splits),
        "tokens": sum(s["tokens"] for s in splits),
    }


def steady(n: dict, ten: dict) -> dict:
    """The cost of the files 10N adds to N: fixed costs cancel."""
    files, notes = ten["files"] - n["files"], ten["notes"] - n["notes"]
    wall = ten["best_wall_s"] - n["best_wall_s"]
    cpu = ten["best_cpu_s"] - n["best_cpu_s"]
    return {"files": files, "notes": notes, "best_wall_s": wall, "best_cpu_s": cpu}


_MEMORY_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
from aurl.data.prepare import prepare
from aurl.data.sources import folder_source
with tempfile.TemporaryDirectory() as root:
    ds = prepare(folder_source(sys.argv[1]), workers=int(sys.argv[2]), progress=False,
                 root=Path(root))
# VmHWM: ru_maxrss would keep the benchmark's own size, copied in by fork before exec.
status = Path("/proc/self/status").read_text().split("VmHWM:")[1]
own = int(status.split()[0]) / 1024
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"files": ds.manifest["report"]["used"], "main_mib": own, "worker_mib": worker}))
"""


def peak_memory(folder: Path, workers: int) -> dict:
    """Peak RSS (MiB) of a fresh process running prepare over ``folder`` (VmHWM), and of its
    largest worker (ru_maxrss of RUSAGE_CHILDREN: the largest descendant waited for)."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(folder), str(workers)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_all(files: list[Path], repeats: int, scratch: Path) -> dict:
    small = scratch / "n"
    small.mkdir()
    for path in files:
        (small / path.name).write_bytes(path.read_bytes())
    large = replicate(files, scratch / "10n")
    from bench_tokenize import miditok_remi  # here, so that spawned workers do not import it

    remi = miditok_remi()
    r: dict = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    r["symusic_parse"], _ = timed_runs(lambda: [symusic.Score(str(p)) for p in files], repeats)
    r["miditok"], _ = timed_runs(
        lambda: [remi.encode(symusic.Score(str(p))) for p in files], repeats
    )
    for key, workers, options in (("prepare_1", 1, {}), ("prepare_2", 2, {}),
                                  ("prepare_2_scan_all", 2, {"scan_all": True})):  # fmt: skip
        n = time_prepare(small, workers, repeats, **options)
        ten = time_prepare(large, workers, repeats, **options)
        r[key] = {"n": n, "10n": ten, "steady": steady(n, ten)}
    notes = r["prepare_1"]["n"]["notes"]
    for key in ("symusic_parse", "miditok"):
        r[key] |= {"files": len(files), "notes": notes}
    r["memory"] = {"n": peak_memory(small, 2), "10n": peak_memory(large, 2)}
    r["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return r


def markdown(r: dict, info: dict, repeats: int) -> str:
    mt_wall = r["miditok"]["notes"] / r["miditok"]["best_wall_s"]
    mt_cpu = r["miditok"]["notes"] / r["miditok"]["best_cpu_s"]
    rows = [
        "| what | files | wall s | files/s | notes/s | × MidiTok | CPU s | notes/CPU-s "
        "| × MidiTok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, run: dict) -> None:
        wall, cpu = run["notes"] / run["best_wall_s"], run["notes"] / run["best_cpu_s"]
        rows.append(
            f"| {name} | {run['files']:,} | {run['best_wall_s']:.2f} | "
            f"{run['files'] / run['best_wall_s']:,.0f} | {wall:,.0f} | {wall / mt_wall:.1f} | "
            f"{run['best_cpu_s']:.2f} | {cpu:,.0f} | {cpu / mt_cpu:.1f} |"
        )

    row("symusic parse, 1 process (ceiling)", r["symusic_parse"])
    row("MidiTok 3.1.0 REMI read + encode, 1 process", r["miditok"])
    labels = {"prepare_1": "1 worker", "prepare_2": "2 workers",
              "prepare_2_scan_all": "2 workers, scan_all"}  # fmt: skip
    for key, label in labels.items():
        row(f"aurl prepare, {label}, N", r[key]["n"])
        row(f"aurl prepare, {label}, 10N", r[key]["10n"])
        row(f"aurl prepare, {label}, steady (10N − N)", r[key]["steady"])
    n, ten = r["prepare_1"]["n"], r["prepare_1"]["10n"]
    m = r["memory"]
    ratio_main = m["10n"]["main_mib"] / m["n"]["main_mib"]
    ratio_worker = m["10n"]["worker_mib"] / m["n"]["worker_mib"]

    def ratio(key: str, basis: str, part: str = "steady") -> str:
        run = r[key][part]
        ours = run["notes"] / run[f"best_{basis}_s"]
        return f"{ours / (mt_wall if basis == 'wall' else mt_cpu):.1f}×"

    return "\n".join(
        [
            "# Preparation speed and memory",
            "",
            f"{n['files']} Bach chorales (N), {n['notes']:,} notes used; 10N = the chorales "
            f"plus nine transposed copies each ({ten['files']:,} files, {ten['used']:,} used, "
            f"{ten['duplicates']} duplicates). Best of {repeats} repeats; every tool reads "
            "the files from disk. prepare runs include starting the worker processes, "
            "fingerprinting every file, and writing shards, manifest and report; *steady* is 10N minus N, which cancels those fixed costs. "
            "CPU s counts this process and its workers.",
            "",
            *rows,
            "",
            "- throughput, prepare / MidiTok, wall clock (target ≥ 10×): steady, 1 worker "
            f"**{ratio('prepare_1', 'wall')}**, 2 workers **{ratio('prepare_2', 'wall')}**; "
            f"whole run of 10N files with start-up, 1 worker {ratio('prepare_1', 'wall', '10n')}"
            f", 2 workers {ratio('prepare_2', 'wall', '10n')}",
            "- cost, prepare / MidiTok, notes per CPU-second (whatever the neighbours do): "
            f"steady, 1 worker **{ratio('prepare_1', 'cpu')}**, 2 workers "
            f"**{ratio('prepare_2', 'cpu')}**, 2 workers with scan_all "
            f"{ratio('prepare_2_scan_all', 'cpu')}",
            "- N alone is mostly start-up: two worker processes importing numpy, symusic and "
            "pydantic (about 0.3 s), which 409 small files do not hide",
            f"- files repaired in N: {n['repaired']}",
            "",
            "## Peak memory (peak RSS, MiB), prepare with 2 workers in a fresh process",
            "",
            "| files used | main process | largest worker |",
            "|---:|---:|---:|",
            f"| {m['n']['files']:,} | {m['n']['main_mib']:.0f} | {m['n']['worker_mib']:.0f} |",
            f"| {m['10n']['files']:,} | {m['10n']['main_mib']:.0f} | "
            f"{m['10n']['worker_mib']:.0f} |",
            "",
            f"- 10N / N: main process {ratio_main:.2f}×, largest worker {ratio_worker:.2f}× "
            "(target ≤ 1.5×)",
            "",
            "## Load",
            "",
            f"Load average (1, 5, 15 min) at the start {r['load_average_start']}, at the end "
            f"{r['load_average_end']}. "
            + (
                "Other work was using the cores when it started: wall times are long and noisy, and the "
                "CPU-time ratios against MidiTok, measured in the same run, are the figures "
                "to read."
                if r["load_average_start"][0] > 1.5  # the run itself loads the cores later
                else "The machine was otherwise idle when it started."
            ),
            "",
            machine_markdown(info),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N files")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    files = bach_source(progress=False).files
    if args.limit:
        files = files[: args.limit]
    with tempfile.TemporaryDirectory() as scratch:
        results = run_all(files, args.repeats, Path(scratch))
    info = machine_info(PACKAGES)
    data = {"benchmark": "prepare", "machine": info, "repeats": args.repeats, "results": results}
    mt = results["miditok"]["notes"] / results["miditok"]["best_cpu_s"]
    print(", ".join(
        f"{k} steady {results[k]['steady']['notes'] / results[k]['steady']['best_cpu_s']:,.0f}"
        f" notes/CPU-s ({results[k]['steady']['notes'] / results[k]['steady']['best_cpu_s'] / mt:.1f}x MidiTok)"
        for k in ("prepare_1", "prepare_2", "prepare_2_scan_all")
    ))  # fmt: skip
    kwargs = {"out_dir": args.out} if args.out else {}
    write_results("prepare", data, markdown(results, info, args.repeats), **kwargs)


if __name__ == "__main__":
    main()
