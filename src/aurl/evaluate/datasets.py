"""The data a model is evaluated on: the dataset it was trained on, or any corpus prepared with
the model's tokenizer (so that models with different tokenizers are compared on the same
pieces: splits go by each piece's identity)."""

from __future__ import annotations

import json

from aurl.data.prepare import MANIFEST, Dataset, prepare
from aurl.data.sources import resolve_source
from aurl.models import ModelFolder
from aurl.paths import cache_dir
from aurl.tokens import Tokenizer

WORKERS = 2  # processes preparing a dataset that is not cached yet


def source_dataset(source: str | None, tokenizer: Tokenizer, progress: bool = False) -> Dataset:
    """``source`` (a folder of MIDI files or a corpus name, as ``aurl prepare`` takes; None:
    the default corpus) prepared with ``tokenizer``: from the cache, else built and cached.

    Raises:
        SourceError: no such folder or corpus, or no MIDI files in it.
    """
    found = resolve_source(source, workers=WORKERS, progress=progress)
    return prepare(found, tokenizer, workers=WORKERS, progress=progress)


def trained_dataset(folder: ModelFolder, progress: bool = False) -> Dataset:
    """The dataset a model was trained on: the cached one if it is still there and was
    tokenized exactly as the model expects, else rebuilt from the source the model names.

    Raises:
        ValueError: the model folder does not name its training data.
    """
    if "data_source" not in folder.meta:
        raise ValueError(
            f"{folder.path}: the model folder does not name its training data "
            "(data_source); compare generated files with --files/--reference"
        )
    cached = _cached(folder.meta.get("data_fingerprint"), folder.tokenizer)
    return cached or source_dataset(folder.meta["data_source"], folder.tokenizer, progress)


def _cached(key: str | None, tokenizer: Tokenizer) -> Dataset | None:
    """The cached dataset ``key`` if it was tokenized with ``tokenizer``; else None."""
    folder = cache_dir() / "datasets" / str(key)
    if not key or not (folder / MANIFEST).is_file():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        same = Tokenizer.from_dict(manifest["tokenizer"]).fingerprint() == tokenizer.fingerprint()
    except (ValueError, KeyError, TypeError):  # an older manifest or tokenizer format
        return None
    return Dataset(folder, manifest, cached=True) if same else None
