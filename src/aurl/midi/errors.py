"""The one error type for MIDI input and output."""

from __future__ import annotations

import os


class MidiError(Exception):
    """A MIDI file could not be read or written.

    Attributes:
        path: The file involved, as given by the caller.
        reason: A short, human-readable reason, such as ``"no notes"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[object, str]]:
        return (type(self), (self.path, self.reason))
