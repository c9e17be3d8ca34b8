"""Content-addressed cache of encoded pieces: one row per (file content, settings).

The key of an entry is the hash of a file's bytes, in a database named by the hash of
everything that shapes its encoding (tokenizer and preprocessing configs). Adding files to
a corpus therefore only encodes the new ones, and changing a setting encodes everything
again under a new database. Each entry holds the token ids (or the reason the file was not
used) and the piece's metadata.

The entries of one settings digest live in one SQLite file rather than one file each:
creating a small file atomically costs more than encoding a piece, and SQLite gives the
same guarantees (a transaction is written whole or not at all; several processes may share
the file). New entries are committed in batches; an interrupted run keeps every batch
committed before it stopped. A damaged database is set aside and started afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BATCH = 256  # entries per transaction
SUFFIX = ".sqlite"


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
    """Entries in ``root/<settings digest>.sqlite``, keyed by file digest.

    Use as a context manager, or call :meth:`close`, so the last batch is committed.
    """

    def __init__(self, root: Path, settings: dict):
        self.settings = settings
        self.path = Path(root) / (settings_digest(settings) + SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._pending = 0
        try:
            self._db = _open(self.path)
        except sqlite3.DatabaseError:  # not a database, or damaged: set it aside
            self.path.replace(self.path.with_name(self.path.name + ".damaged"))
            self._db = _open(self.path)

    def has(self, digest: str) -> bool:
        try:
            row = self._db.execute("SELECT 1 FROM pieces WHERE digest = ?", (digest,)).fetchone()
        except sqlite3.DatabaseError:
            return False
        return row is not None

    def get(self, digest: str) -> CachedPiece | None:
        """The entry, or None when it is missing or cannot be read."""
        try:
            row = self._db.execute(
                "SELECT info, ids FROM pieces WHERE digest = ?", (digest,)
            ).fetchone()
            if row is None:
                return None
            info = json.loads(row[0])
            ids = None if row[1] is None else np.frombuffer(row[1], np.uint16).astype(np.int64)
        except (sqlite3.DatabaseError, ValueError, TypeError):
            return None
        if not isinstance(info, dict):
            return None
        return CachedPiece(ids, info)

    def put(self, digest: str, piece: CachedPiece) -> None:
        """Store an entry (replacing any under the same digest); committed with its batch."""
        ids = None if piece.ids is None else piece.ids.astype(np.uint16).tobytes()
        self._db.execute(
            "INSERT OR REPLACE INTO pieces (digest, info, ids) VALUES (?, ?, ?)",
            (digest, json.dumps(piece.info), ids),
        )
        self._pending += 1
        if self._pending >= BATCH:
            self.commit()

    def commit(self) -> None:
        self._db.commit()
        self._pending = 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.commit()
        self._db.close()

    def __enter__(self) -> PieceCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM pieces").fetchone()[0]


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")  # readers and one writer at once
        db.execute("PRAGMA synchronous=NORMAL")  # a cache: a power cut may lose the last batch
        db.execute(
            "CREATE TABLE IF NOT EXISTS pieces (digest TEXT PRIMARY KEY, info TEXT, ids BLOB)"
        )
        db.commit()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def cache_entries(root: Path) -> list[tuple[str, int]]:
    """Each settings database under ``root`` and its number of entries."""
    out = []
    for path in sorted(Path(root).glob("*" + SUFFIX)):
        try:
            with contextlib.closing(sqlite3.connect(path)) as db:
                out.append((path.stem, db.execute("SELECT COUNT(*) FROM pieces").fetchone()[0]))
        except sqlite3.DatabaseError:
            out.append((path.stem, 0))
    return out
