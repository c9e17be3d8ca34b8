"""The models a server may load: chosen by name only, from the shipped ones and ``runs/``.

A request never names a path: ``bach-small`` is a shipped model, ``my-run`` is
``runs/my-run/model``. Names are checked against what exists before anything is loaded.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from aurl.api import Generator, load
from aurl.paths import SHIPPED_DIR, SHIPPED_MODEL, shipped_models

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class UnknownModel(ValueError):
    """A model name the server does not offer."""


class Models:
    """Loaded on first use and kept; ``default`` answers requests that name none.

    Args:
        runs: the folder of training runs (``runs/``) whose exported models are offered.
        default: the model of requests that name none (a name from :meth:`names`).
        device: where models run.
        threads: CPU threads (None: the idle cores).
        backend: ``auto`` (onnxruntime where :func:`aurl.api.load` finds or makes an export
            of the model, as every command does) or ``torch``.
    """

    def __init__(self, runs: str | Path = "runs", default: str | None = None,
                 device: str = "auto", threads: int | None = None,
                 backend: str = "auto"):  # fmt: skip
        self.runs, self.device, self.threads = Path(runs), device, threads
        self.backend = backend
        self.loaded: dict[str, Generator] = {}
        self._lock = threading.Lock()
        self.default = default or SHIPPED_MODEL.name
        self.path(self.default)  # fail at start for a bad default

    def names(self) -> list[str]:
        """Every model a request may name: the shipped ones, then the runs with a model."""
        runs = sorted(p.parent.parent.name for p in self.runs.glob("*/model/config.json"))
        return shipped_models() + [r for r in runs if r not in shipped_models()]

    def path(self, name: str) -> Path:
        """The folder of model ``name``.

        Raises:
            UnknownModel: not a name this server offers (the message lists them).
        """
        if _NAME.match(name):
            if name in shipped_models():
                return SHIPPED_DIR / name
            folder = self.runs / name / "model"
            if (folder / "config.json").is_file():
                return folder
        raise UnknownModel(f"no model named {name!r}; models: {', '.join(self.names())}")

    def get(self, name: str | None = None) -> Generator:
        """The loaded model ``name`` (default: the server's), loading it on first use."""
        name = name or self.default
        with self._lock:
            if name not in self.loaded:
                self.loaded[name] = load(
                    self.path(name), self.device, threads=self.threads, backend=self.backend
                )
            return self.loaded[name]
