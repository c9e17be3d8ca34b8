"""Train/validation/test membership by a hash of each piece's identity.

Adding or removing files never moves a piece between splits.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")


def split_of(identity: str, val_percent: float = 5.0, test_percent: float = 5.0) -> str:
    """The split of the piece called ``identity``."""
    digest = hashlib.sha1(identity.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000 / 100.0  # 0.00 .. 99.99
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"
