"""Errors shared across packages; this module imports nothing from Aurl."""

from __future__ import annotations


class ConfigError(Exception):
    """A config file or override that cannot be used; the message names the field."""
