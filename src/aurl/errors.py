"""Errors shared across packages; this module imports nothing from Aurl."""

from __future__ import annotations


class ConfigError(Exception):
    """A config file or override that cannot be used; the message names the field."""


class ModelLoadError(Exception):
    """A model folder that is missing, incomplete or not an Aurl model."""


class DivergedError(Exception):
    """Training kept producing bad steps after every allowed rollback."""
