"""Where Aurl keeps files it makes: caches under the user cache folder, never in the source tree."""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_MODEL = Path(__file__).parent / "shipped" / "bach-small"


def cache_dir() -> Path:
    """``$AURL_CACHE_DIR``, else ``$XDG_CACHE_HOME/aurl``, else ``~/.cache/aurl``."""
    if env := os.environ.get("AURL_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "aurl"


def resolve_model_path(model: str | Path | None) -> Path:
    """``None`` -> the shipped model; ``runs/NAME`` -> its exported ``model/`` folder."""
    if model is None:
        return SHIPPED_MODEL
    path = Path(model)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    return path
