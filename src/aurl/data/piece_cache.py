"""Content-addressed cache of encoded pieces: one small file per (file content, settings).

The key of an entry is the hash of a file's bytes and the hash of everything that shapes
its encoding (tokenizer and preprocessing configs). Adding files to a corpus therefore only
encodes the new ones, and changing a setting encodes everything again under a new key.
Each entry holds the token ids (or the reason the file was not used) and the piece's
metadata, written atomically.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aurl.fileio import atomic_write_bytes


@dataclass
class CachedPiece:
    """What encoding one file produced."""

    ids: np.ndarray | None  # None when the file was skipped
    info: dict = field(default_factory=dict)  # notes, reason, stage, repairs, metadata ...


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings_digest(settings: dict) -> str:
    """Hash of the settings that shape an encoding (a JSON-able dict)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class PieceCache:
    """Entries under ``root/<settings digest>/<2 hex>/<file digest>.piece``."""

    def __init__(self, root: Path, settings: dict):
        self.settings = settings
        self.folder = Path(root) / settings_digest(settings)

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.piece"

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def get(self, digest: str) -> CachedPiece | None:
        path = self._path(digest)
        try:
            data = path.read_bytes()
            head, _, body = data.partition(b"\n")
            info = json.loads(head)
            ids = np.frombuffer(body, np.uint16).astype(np.int64) if info.pop("_ids") else None
        except (OSError, ValueError, KeyError):  # missing or damaged: a miss
            return None
        return CachedPiece(ids, info)

    def put(self, digest: str, piece: CachedPiece) -> None:
        """One line of JSON, then the ids as uint16 bytes; written whole or not at all."""
        head = json.dumps({**piece.info, "_ids": piece.ids is not None}).encode()
        body = piece.ids.astype(np.uint16).tobytes() if piece.ids is not None else b""
        atomic_write_bytes(self._path(digest), head + b"\n" + body, durable=False)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.piece")) if self.folder.exists() else 0
