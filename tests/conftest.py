"""Shared fixtures: the converted Bach chorales, a small dataset and a tiny trained model.

Everything is written under pytest's temporary folders; the cache variable points there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Test models are tiny: one thread is fastest, and it stays fast when the machine is busy.
torch.set_num_threads(1)

# The shared corpus of malformed and unusual MIDI files sits beside the checkout;
# AURL_EDGE_CASES points elsewhere (tests that need it skip when it is absent).
EDGE_CASES = Path(
    os.environ.get("AURL_EDGE_CASES")
    or Path(__file__).resolve().parents[2] / "shared" / "midi-edge-cases"
)


@pytest.fixture(scope="session", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    old = os.environ.get("AURL_CACHE_DIR")
    # AURL_TEST_CACHE lets a developer keep converted chorales between runs.
    cache = os.environ.get("AURL_TEST_CACHE") or tmp_path_factory.mktemp("cache")
    os.environ["AURL_CACHE_DIR"] = str(cache)
    yield
    if old is None:
        os.environ.pop("AURL_CACHE_DIR", None)
    else:
        os.environ["AURL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def bach_source():
    """All Bach chorales as MIDI (converted once per test session)."""
    from aurl.data.sources import bach_source as make

    return make(workers=2, progress=False)


@pytest.fixture(scope="session")
def small_corpus(bach_source, tmp_path_factory) -> Path:
    """A folder with 40 chorales: enough for every split to hold pieces."""
    folder = tmp_path_factory.mktemp("small_corpus")
    for path in bach_source.files[:40]:
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


@pytest.fixture(scope="session")
def tiny_run(small_corpus, tmp_path_factory) -> Path:
    """A tiny model trained for a few seconds with configs/tiny.yaml."""
    from aurl.config import load_config
    from aurl.train.lm import train_run

    config = load_config(Path(__file__).parents[1] / "configs" / "tiny.yaml",
                         [f"data.source={small_corpus}"])  # fmt: skip
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train_run(config, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def feature_run(small_corpus, tmp_path_factory) -> Path:
    """A tiny model trained with tracks, controls and infilling (the bar before a gap repeated)
    (shared by their tests)."""
    from aurl.train.lm import train_run
    from factories import tiny_config

    run_dir = tmp_path_factory.mktemp("runs") / "features"
    config = tiny_config(small_corpus, "tokenizer.tracks=16", "tokenizer.controls=true",
                         "tokenizer.infill=true", "tokenizer.infill_context=1",
                         "data.infill.bars=0.3",
                         "data.infill.tracks=0.3")  # fmt: skip
    train_run(config, run_dir, progress=False)
    return run_dir
