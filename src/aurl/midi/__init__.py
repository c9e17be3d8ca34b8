"""MIDI input and output: read files into symusic Scores, write Scores back."""

from aurl.midi.errors import MidiError
from aurl.midi.read import read_midi, read_midi_bytes
from aurl.midi.write import write_midi

__all__ = ["MidiError", "read_midi", "read_midi_bytes", "write_midi"]
