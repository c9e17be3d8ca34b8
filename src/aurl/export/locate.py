"""Where a model's ONNX export lives, and whether one made for exactly its weights exists.

An export records the SHA-256 of the weights it was made from (``weights_sha256`` in its
``onnx.json``). ``aurl export MODEL`` with no folder writes to the user cache,
``<cache>/onnx/<model folder name>-<first 12 hex digits of that hash>``, so a shipped model
(inside the installed package, which may not be writable) gets an export too, and a model
retrained in the same folder never meets a stale one. The ``auto`` backend looks in the
model's own ``onnx/`` subfolder, then in that cache folder, and takes the first whose hash
matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aurl.errors import ModelLoadError
from aurl.models.folder import WEIGHTS
from aurl.paths import cache_dir

META = "onnx.json"


def weights_sha256(model_path: str | Path) -> str:
    """The SHA-256 (hex) of a model folder's weights file.

    Raises:
        ModelLoadError: the folder has no weights file.
    """
    digest = hashlib.sha256()
    try:
        with open(Path(model_path) / WEIGHTS, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        raise ModelLoadError(f"{model_path}: not a model folder (no {WEIGHTS})") from None
    return digest.hexdigest()


def default_export_dir(model_path: str | Path, sha: str | None = None) -> Path:
    """The cache folder ``aurl export`` writes a model's export to when given none (``sha``:
    its weights' hash, when known)."""
    path = Path(model_path).resolve()
    return cache_dir() / "onnx" / f"{path.name}-{(sha or weights_sha256(path))[:12]}"


def find_export(model_path: str | Path) -> Path | None:
    """The export made from exactly this model folder's weights (its ``onnx/`` subfolder or
    its cache folder), or None."""
    path = Path(model_path)
    if not (path / WEIGHTS).is_file():
        return None
    sha = weights_sha256(path)
    for folder in (path / "onnx", default_export_dir(path, sha)):
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("weights_sha256") == sha:
            return folder
    return None


def export_format(folder: str | Path) -> str | None:
    """The ``format`` an export's ``onnx.json`` records (None where it cannot be read)."""
    try:
        meta = json.loads((Path(folder) / META).read_text())
    except (OSError, ValueError):
        return None
    return meta.get("format") if isinstance(meta, dict) else None
