"""The content-addressed piece cache."""

from __future__ import annotations

import numpy as np

from aurl.data.piece_cache import (
    BATCH,
    CachedPiece,
    PieceCache,
    cache_entries,
    file_digest,
    settings_digest,
)


def test_put_get_and_keys(tmp_path):
    cache = PieceCache(tmp_path, {"tokenizer": {"a": 1}})
    ids = np.array([1, 16, 17, 600, 2])
    cache.put("ab" * 32, CachedPiece(ids, {"notes": 3}))
    cache.put("cd" * 32, CachedPiece(None, {"reason": "no notes"}))
    got = cache.get("ab" * 32)
    assert np.array_equal(got.ids, ids) and got.info == {"notes": 3}
    assert cache.get("cd" * 32).ids is None and cache.get("cd" * 32).info["reason"] == "no notes"
    assert cache.get("ef" * 32) is None and len(cache) == 2
    other = PieceCache(tmp_path, {"tokenizer": {"a": 2}})  # other settings, other entries
    assert other.get("ab" * 32) is None
    assert settings_digest({"x": 1, "y": 2}) == settings_digest({"y": 2, "x": 1})
    cache.close()
    again = PieceCache(tmp_path, {"tokenizer": {"a": 1}})  # committed on close, read back
    assert np.array_equal(again.get("ab" * 32).ids, ids) and len(again) == 2
    assert cache_entries(tmp_path) == sorted(
        [
            (settings_digest({"tokenizer": {"a": 1}}), 2),
            (settings_digest({"tokenizer": {"a": 2}}), 0),
        ]
    )


def test_batches_are_committed_as_they_fill(tmp_path):
    cache = PieceCache(tmp_path, {})
    for k in range(BATCH):
        cache.put(f"{k:064x}", CachedPiece(np.array([1, k]), {}))
    other = PieceCache(tmp_path, {})  # another process would see the full batch
    assert len(other) == BATCH and other.get(f"{7:064x}").ids.tolist() == [1, 7]


def test_damaged_entry_is_a_miss(tmp_path):
    cache = PieceCache(tmp_path, {})
    cache.put("ab" * 32, CachedPiece(np.array([1, 2]), {}))
    cache.put("cd" * 32, CachedPiece(np.array([1, 2]), {}))
    cache._db.execute("UPDATE pieces SET info = 'garbage' WHERE digest = ?", ("ab" * 32,))
    cache._db.execute("UPDATE pieces SET info = '[1]' WHERE digest = ?", ("cd" * 32,))
    assert cache.get("ab" * 32) is None and cache.get("cd" * 32) is None


def test_damaged_database_starts_afresh(tmp_path):
    cache = PieceCache(tmp_path, {})
    cache.put("ab" * 32, CachedPiece(np.array([1, 2]), {}))
    cache.close()
    cache.path.write_bytes(b"this is not a database" * 100)
    fresh = PieceCache(tmp_path, {})
    assert fresh.get("ab" * 32) is None and len(fresh) == 0
    fresh.put("ab" * 32, CachedPiece(np.array([3]), {}))
    assert fresh.get("ab" * 32).ids.tolist() == [3]
    assert cache.path.with_name(cache.path.name + ".damaged").is_file()


def test_file_digest_follows_content(tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    a.write_bytes(b"MThd same")
    b.write_bytes(b"MThd same")
    assert file_digest(a) == file_digest(b)
    b.write_bytes(b"MThd other")
    assert file_digest(a) != file_digest(b)
