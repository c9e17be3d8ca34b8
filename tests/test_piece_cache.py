"""The content-addressed piece cache."""

from __future__ import annotations

import numpy as np

from aurl.data.piece_cache import CachedPiece, PieceCache, file_digest, settings_digest


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


def test_damaged_entry_is_a_miss(tmp_path):
    cache = PieceCache(tmp_path, {})
    cache.put("ab" * 32, CachedPiece(np.array([1, 2]), {}))
    next(cache.folder.glob("*/*.piece")).write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None


def test_file_digest_follows_content(tmp_path):
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    a.write_bytes(b"MThd same")
    b.write_bytes(b"MThd same")
    assert file_digest(a) == file_digest(b)
    b.write_bytes(b"MThd other")
    assert file_digest(a) != file_digest(b)
