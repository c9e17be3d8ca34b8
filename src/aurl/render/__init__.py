"""Pictures and sound of music: piano rolls from Scores (``roll``), and WAV audio with a
General MIDI SoundFont (``audio``, imported where it is used: it loads a synthesizer)."""

from aurl.render.roll import piano_roll

__all__ = ["piano_roll"]
