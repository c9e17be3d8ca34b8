"""Aurl: symbolic music generation."""

__version__ = "0.1.0"
