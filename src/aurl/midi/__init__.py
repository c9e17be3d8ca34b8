"""MIDI input and output: read files into symusic Scores, write Scores back, find MIDI files."""

from aurl.midi.errors import MidiError
from aurl.midi.files import MIDI_SUFFIXES, midi_files
from aurl.midi.read import read_midi, read_midi_bytes
from aurl.midi.write import write_midi

__all__ = ["MIDI_SUFFIXES", "MidiError", "midi_files", "read_midi", "read_midi_bytes", "write_midi"]
