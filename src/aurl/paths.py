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
