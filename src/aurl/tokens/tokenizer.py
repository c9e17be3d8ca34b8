"""The tokenizer: a config, its vocabulary and grammar, and the two conversions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import symusic

from aurl.tokens.config import TokenizerConfig
from aurl.tokens.decode import decode
from aurl.tokens.encode import encode
from aurl.tokens.grammar import Grammar
from aurl.tokens.vocab import build_vocabulary


class Tokenizer:
    """Encode scores to ids and back, under one :class:`TokenizerConfig`."""

    def __init__(self, config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self.vocab = build_vocabulary(self.config)
        self.grammar = Grammar(self.vocab)

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    def encode(self, score: symusic.Score) -> np.ndarray:
        """Score -> int64 token ids from BOS to EOS."""
        return encode(score, self.vocab)

    def decode(self, ids) -> symusic.Score:
        """Token ids -> Score (ticks = grid steps)."""
        return decode(ids, self.vocab)

    def to_dict(self) -> dict:
        return self.config.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        return cls(TokenizerConfig.model_validate(data))

    def fingerprint(self) -> str:
        """A stable text form of the config, for cache keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def save(self, path: Path) -> None:
        from aurl.fileio import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        return cls.from_dict(json.loads(Path(path).read_text()))
