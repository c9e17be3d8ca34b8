"""Pictures (and later audio) of music: piano rolls from Scores."""

from aurl.render.roll import piano_roll

__all__ = ["piano_roll"]
