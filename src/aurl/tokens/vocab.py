"""The vocabulary: which id means what, laid out as contiguous ranges per token type."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from aurl.midi.arrays import DRUMS
from aurl.tokens.config import TokenizerConfig

PAD, BOS, EOS = 0, 1, 2
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
KEY_NAMES = tuple(f"{p} major" for p in PITCH_NAMES) + tuple(
    f"{p.lower()} minor" for p in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
)
CHORD_QUALITIES = ("maj", "min", "dim", "aug", "dom7", "maj7", "min7", "hdim7", "dim7", "sus4")
# Bar-control bins (see aurl.tokens.controls): a value below edges[0] is bin 0, at or above
# edges[-1] the last bin.
DENSITY_EDGES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # notes starting per quarter note
POLYPHONY_EDGES = (1.5, 2.5, 3.5, 4.5, 6.0)  # notes struck together, on average
REGISTER_EDGES = (48, 54, 60, 63, 66, 72, 78)  # mean MIDI pitch of the bar's notes
# Voices a track can be declared as (matched from track names, see aurl.tokens.tracks).
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass", "Quinto", "Sesto", "Voice")
DRUM_PROGRAM = DRUMS  # Program token for drum tracks, kept apart from the 128 GM programs


class TokenType(IntEnum):
    """Every token belongs to exactly one type; the grammar works on types."""

    PAD = 0
    BOS = 1
    EOS = 2
    RESERVED = 3
    BAR = 4
    TIMESIG = 5
    POSITION = 6
    TEMPO = 7
    PROGRAM = 8
    PITCH = 9
    VELOCITY = 10
    DURATION = 11
    MICROTIMING = 12  # a note's offset from its grid step (only with microtiming >= 2)
    TRACK = 13  # a track of the piece (only with tracks >= 1)
    VOICE = 14  # the voice a declared track sings (Soprano, Alto...; only with tracks)
    STYLE = 15  # piece controls (only with controls): the corpus a piece is like
    KEY = 16  # 0-11 major on C..B, 12-23 minor
    DENSITY = 17  # bar controls (only with controls): see aurl.tokens.controls
    POLYPHONY = 18
    REGISTER = 19
    CHORD = 20  # quality * 12 + root
    FILL = 21  # infilling (only with infill): this bar's content comes after Infill
    INFILL = 22  # opens the second pass: the marked bars again, in order


@dataclass(frozen=True)
class Vocabulary:
    """Id ranges and per-id lookup tables derived from a :class:`TokenizerConfig`.

    Lookup arrays (all of length ``size``): ``types`` (TokenType per id), ``values`` (the
    position, pitch, program, bin index ... an id stands for, -1 for specials) and
    ``bar_steps`` (bar length in steps for TimeSig ids, 0 otherwise).
    """

    config: TokenizerConfig
    offsets: dict[TokenType, int]
    counts: dict[TokenType, int]
    time_signatures: tuple[tuple[int, int], ...]
    types: np.ndarray
    values: np.ndarray
    bar_steps: np.ndarray
    tempo_values: np.ndarray  # (tempo_bins,) BPM at each tempo bin
    velocity_values: np.ndarray  # (velocity_bins,) MIDI velocity at each bin
    signature_index: dict[tuple[int, int], int]  # (numerator, denominator) -> TimeSig index

    @property
    def size(self) -> int:
        return len(self.types)

    @property
    def has_tracks(self) -> bool:
        """Whether pieces declare their tracks (``TokenizerConfig.tracks`` >= 1)."""
        return self.counts[TokenType.TRACK] > 0

    @property
    def has_controls(self) -> bool:
        """Whether the control types have ids (``TokenizerConfig.controls``)."""
        return self.counts[TokenType.KEY] > 0

    @property
    def has_infill(self) -> bool:
        """Whether the Fill and Infill tokens exist (``TokenizerConfig.infill``)."""
        return self.counts[TokenType.INFILL] > 0

    @property
    def max_bar_steps(self) -> int:
        return self.counts[TokenType.POSITION]

    def token(self, kind: TokenType, value: int) -> int:
        """The id of ``kind`` with index ``value`` (e.g. ``token(PITCH, 60)``)."""
        if not 0 <= value < self.counts[kind]:
            raise ValueError(f"{kind.name} value {value} out of range 0..{self.counts[kind] - 1}")
        return self.offsets[kind] + value

    def name(self, token_id: int) -> str:
        """A readable name such as ``Pitch_60`` or ``TimeSig_3/4``."""
        if not 0 <= token_id < self.size:
            return f"<invalid {token_id}>"
        kind = TokenType(int(self.types[token_id]))
        value = int(self.values[token_id])
        if kind in (TokenType.PAD, TokenType.BOS, TokenType.EOS, TokenType.BAR, TokenType.FILL,
                    TokenType.INFILL):  # fmt: skip
            return kind.name.capitalize()
        if kind == TokenType.TIMESIG:
            num, den = self.time_signatures[value]
            return f"TimeSig_{num}/{den}"
        if kind == TokenType.TEMPO:
            return f"Tempo_{self.tempo_values[value]:.1f}"
        if kind == TokenType.PROGRAM and value == DRUM_PROGRAM:
            return "Program_Drums"
        if kind == TokenType.DURATION:
            return f"Duration_{value + 1}"
        if kind == TokenType.MICROTIMING:
            return f"MicroTiming_{value - self.config.micro // 2:+d}/{self.config.micro}"
        if kind == TokenType.VOICE:
            return f"Voice_{VOICE_NAMES[value]}"
        if kind == TokenType.STYLE:
            return f"Style_{self.config.styles[value]}"
        if kind == TokenType.KEY:
            return f"Key_{KEY_NAMES[value].replace(' ', '_')}"
        if kind == TokenType.CHORD:
            return f"Chord_{PITCH_NAMES[value % 12]}{CHORD_QUALITIES[value // 12]}"
        return f"{kind.name.capitalize()}_{value}"


def build_vocabulary(config: TokenizerConfig) -> Vocabulary:
    """Lay out the id ranges for ``config``: specials, Bar, TimeSig, Position, Tempo, Program,
    Pitch, Velocity, Duration, MicroTiming, Track, Voice, then the controls, in that order
    (MicroTiming and the later types are empty unless their options are on, so older configs
    keep every id)."""
    sigs = tuple(tuple(int(x) for x in ts.split("/")) for ts in config.time_signatures)
    sig_steps = [config.bar_steps(n, d) for n, d in sigs]
    counts = {
        TokenType.PAD: 1,
        TokenType.BOS: 1,
        TokenType.EOS: 1,
        TokenType.RESERVED: config.reserved_tokens,
        TokenType.BAR: 1,
        TokenType.TIMESIG: len(sigs),
        TokenType.POSITION: max(sig_steps),
        TokenType.TEMPO: config.tempo_bins,
        TokenType.PROGRAM: 129,
        TokenType.PITCH: 128,
        TokenType.VELOCITY: config.velocity_bins,
        TokenType.DURATION: config.max_duration_quarters * config.steps_per_quarter,
        TokenType.MICROTIMING: config.micro if config.micro > 1 else 0,
        TokenType.TRACK: config.tracks,
        TokenType.VOICE: len(VOICE_NAMES) if config.tracks else 0,
        **_control_counts(config.controls, len(config.styles)),
        TokenType.FILL: int(config.infill),
        TokenType.INFILL: int(config.infill),
    }
    offsets, start = {}, 0
    for kind in TokenType:
        offsets[kind] = start
        start += counts[kind]
    types = np.concatenate([np.full(counts[k], int(k), np.int64) for k in TokenType])
    values = np.concatenate(
        [
            np.full(counts[k], -1, np.int64) if k <= TokenType.BAR else np.arange(counts[k])
            for k in TokenType
        ]
    )
    bar_steps = np.zeros(start, np.int64)
    bar_steps[offsets[TokenType.TIMESIG] : offsets[TokenType.TIMESIG] + len(sigs)] = sig_steps
    tempo_values = np.geomspace(config.tempo_min, config.tempo_max, config.tempo_bins)
    velocity_values = (
        np.round((np.arange(config.velocity_bins) + 0.5) * 127 / config.velocity_bins + 0.5)
        .clip(1, 127)
        .astype(np.int64)
    )
    return Vocabulary(
        config=config,
        offsets=offsets,
        counts=counts,
        time_signatures=sigs,
        types=types,
        values=values,
        bar_steps=bar_steps,
        tempo_values=tempo_values,
        velocity_values=velocity_values,
        signature_index={sig: i for i, sig in enumerate(sigs)},
    )


def _control_counts(controls: bool, styles: int) -> dict[TokenType, int]:
    """How many ids each control type has (all 0 without controls)."""
    counts = {
        TokenType.STYLE: styles,
        TokenType.KEY: 24,
        TokenType.DENSITY: len(DENSITY_EDGES) + 1,
        TokenType.POLYPHONY: len(POLYPHONY_EDGES) + 1,
        TokenType.REGISTER: len(REGISTER_EDGES) + 1,
        TokenType.CHORD: 12 * len(CHORD_QUALITIES),
    }
    return {k: (v if controls else 0) for k, v in counts.items()}


def velocity_bin(velocity: np.ndarray, bins: int) -> np.ndarray:
    """Map MIDI velocities 1..127 to bin indices 0..bins-1."""
    v = np.clip(np.asarray(velocity, np.int64), 1, 127)
    return np.minimum((v - 1) * bins // 127, bins - 1)


def tempo_bin(qpm: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Map tempos in BPM to the nearest log-spaced tempo bin."""
    cfg = vocab.config
    lo, hi = np.log(cfg.tempo_min), np.log(cfg.tempo_max)
    x = (np.log(np.clip(np.asarray(qpm, np.float64), cfg.tempo_min, cfg.tempo_max)) - lo) / (
        hi - lo
    )
    return np.rint(x * (cfg.tempo_bins - 1)).astype(np.int64)
