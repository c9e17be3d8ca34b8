"""Helpers shared by the benchmark scripts: machine description, timing, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).parent / "results"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(packages: tuple[str, ...]) -> dict:
    """Platform, CPU count, package versions and the date, for the results files."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "versions": {name: package_version(name) for name in packages},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_markdown(info: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return "\n".join(
        [
            "## Machine",
            "",
            f"- platform: `{info['platform']}` ({info['processor']}), Python {info['python']}",
            f"- CPU count: {info['cpu_count']}; torch threads: {info['torch_threads']}; "
            f"load average (1 min) at the end: {info['load_average_1min']}",
            f"- versions: {versions}",
            f"- date: {info['date']}",
        ]
    )


def write_results(name: str, data: dict, markdown: str, out_dir: Path = RESULTS_DIR) -> None:
    """Write ``<name>.json`` and ``<name>.md`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown.rstrip() + "\n")
    print(f"wrote {out_dir / name}.md and {name}.json")
