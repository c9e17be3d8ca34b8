"""Tokens: the vocabulary, encode/decode and the grammar of legal sequences."""

from aurl.tokens.config import TokenizerConfig
from aurl.tokens.grammar import Grammar, Violation
from aurl.tokens.tokenizer import Tokenizer
from aurl.tokens.vocab import BOS, EOS, PAD, TokenType, Vocabulary

__all__ = [
    "BOS", "EOS", "PAD", "Grammar", "Tokenizer", "TokenizerConfig",
    "TokenType", "Violation", "Vocabulary",
]  # fmt: skip
