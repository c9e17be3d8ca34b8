"""Where Aurl keeps files it makes: caches under the user cache folder, never in the source tree."""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED_DIR = Path(__file__).parent / "shipped"
SHIPPED_MODEL = SHIPPED_DIR / "many-small"  # the transformer: generate, continue, infill
CHORALE_MODEL = SHIPPED_DIR / "bach-small"  # chorales only: the judge of the VAE's samples
SHIPPED_VAE = SHIPPED_DIR / "vae-small"  # the latent model: interpolate, vary


def cache_dir() -> Path:
    """``$AURL_CACHE_DIR``, else ``$XDG_CACHE_HOME/aurl``, else ``~/.cache/aurl``."""
    if env := os.environ.get("AURL_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "aurl"


def shipped_models() -> list[str]:
    """Names of the model folders that ship inside the package."""
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_path(model: str | Path | None, default: Path = SHIPPED_MODEL) -> Path:
    """``None`` -> ``default`` (the shipped transformer); ``runs/NAME`` -> its exported
    ``model/`` folder; the name of a shipped model (``vae-small``) -> that folder, unless a
    folder of that name exists here."""
    if model is None:
        return default
    path = Path(model)
    if (path / "model" / "config.json").is_file():
        return path / "model"
    if not path.exists() and str(model) in shipped_models():
        return SHIPPED_DIR / str(model)
    return path
