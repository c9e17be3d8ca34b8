"""Augmentation of training windows: pure functions on token ids, and one function that applies
them as a config and the training step say.

Every function takes int64 ids of a window that starts at a Bar or BOS and returns new ids of
the same length; the input is never changed. Each keeps the sequence legal under the grammar:

* ``transpose``: every pitched note moves by the same number of semitones; drums stay.
* ``stretch_tempo``: every Tempo token moves by the same number of log-spaced tempo bins, so
  the music plays faster or slower while bars, positions and durations (the rhythm on the
  grid) stay as they are. A window without a Tempo token is left unchanged: no Tempo is
  inserted, because the tempo in force before the window is not known.
* ``scale_velocity``: every velocity is multiplied by a factor and clipped to 1..127, which
  keeps the order of the velocities (ties may appear).
* ``substitute_programs``: every GM program is replaced by another of its family (programs
  ``8k .. 8k+7``) through one mapping for the whole window; a permutation per family, so
  distinct instruments stay distinct. Drums stay. Within one position, two instruments of one
  family may then come in another program order than the encoder writes; the grammar allows it.
* ``shift_positions`` (with ``swing_deltas``) and ``jitter_velocity``: humanizing. Whole
  positions move by a few grid steps, each clipped so that it stays inside the bar and less
  than half-way to its neighbours, so positions stay strictly increasing and every note keeps
  its duration and its bar; velocities move by a few bins.

``augment_window`` draws the parameters of each augmentation from its own random stream,
``numpy.random.default_rng((seed, index, stream))``, and applies it with the probability the
config gives at the training step; so a window depends only on (seed, index, step).
"""

from __future__ import annotations

import math

import numpy as np

from aurl.data.config import AugmentConfig, ScheduleConfig
from aurl.tokens import TokenType, Vocabulary
from aurl.tokens.tracks import program_in_force
from aurl.tokens.vocab import DRUM_PROGRAM, velocity_bin

# Random streams: window index ``i`` draws augmentation ``k`` from default_rng((seed, i, k)).
STREAM_TRANSPOSE, STREAM_TEMPO, STREAM_VELOCITY, STREAM_PROGRAMS, STREAM_HUMANIZE = 1, 2, 3, 4, 5
FAMILY_SIZE = 8  # General MIDI programs come in families of eight


def _pitched(ids: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Mask of the Pitch tokens of non-drum notes."""
    return (vocab.types[ids] == TokenType.PITCH) & (program_in_force(ids, vocab) != DRUM_PROGRAM)


def transpose(ids: np.ndarray, vocab: Vocabulary, semitones: int) -> np.ndarray:
    """Move every pitched (non-drum) note by ``semitones``; ids must start at a Bar or BOS.

    Raises:
        ValueError: a pitch would leave 0..127.
    """
    moving = _pitched(ids, vocab)
    pitches = vocab.values[ids[moving]] + semitones
    if len(pitches) and (pitches.min() < 0 or pitches.max() > 127):
        raise ValueError(f"transposing by {semitones} moves a pitch outside 0..127")
    out = ids.copy()
    out[moving] += semitones
    return out


def transpose_range(ids: np.ndarray, vocab: Vocabulary, limit: int) -> tuple[int, int]:
    """The semitone shifts in ``[-limit, limit]`` that keep every pitched note in 0..127."""
    pitches = vocab.values[ids[_pitched(ids, vocab)]]
    if not len(pitches):
        return 0, 0
    return max(-limit, -int(pitches.min())), min(limit, 127 - int(pitches.max()))


def tempo_bin_ratio(vocab: Vocabulary) -> float:
    """The tempo factor between two neighbouring Tempo bins (they are log-spaced)."""
    cfg = vocab.config
    return (cfg.tempo_max / cfg.tempo_min) ** (1 / (cfg.tempo_bins - 1))


def tempo_shift_range(ids: np.ndarray, vocab: Vocabulary, min_factor: float,
                      max_factor: float) -> tuple[int, int]:  # fmt: skip
    """The bin shifts whose factor lies in ``[min_factor, max_factor]`` and that keep every
    Tempo token of ``ids`` inside the tempo range; (0, 0) without Tempo tokens."""
    bins = vocab.values[ids[vocab.types[ids] == TokenType.TEMPO]]
    if not len(bins):
        return 0, 0
    step = math.log(tempo_bin_ratio(vocab))
    lo = max(math.ceil(math.log(min_factor) / step - 1e-9), -int(bins.min()))
    hi = min(math.floor(math.log(max_factor) / step + 1e-9),
             vocab.counts[TokenType.TEMPO] - 1 - int(bins.max()))  # fmt: skip
    return (lo, hi) if lo <= hi else (0, 0)


def stretch_tempo(ids: np.ndarray, vocab: Vocabulary, bins: int) -> np.ndarray:
    """Move every Tempo token by ``bins`` bins: tempos scale by ``tempo_bin_ratio ** bins``.

    Raises:
        ValueError: a tempo would leave the tempo bins.
    """
    is_tempo = vocab.types[ids] == TokenType.TEMPO
    moved = vocab.values[ids[is_tempo]] + bins
    if len(moved) and (moved.min() < 0 or moved.max() >= vocab.counts[TokenType.TEMPO]):
        raise ValueError(f"shifting tempos by {bins} bins leaves the tempo range")
    out = ids.copy()
    out[is_tempo] += bins
    return out


def scale_velocity(ids: np.ndarray, vocab: Vocabulary, factor: float) -> np.ndarray:
    """Multiply every velocity by ``factor`` (clipped to 1..127) and re-bin it."""
    is_velocity = vocab.types[ids] == TokenType.VELOCITY
    velocity = vocab.velocity_values[vocab.values[ids[is_velocity]]] * factor
    new_bin = velocity_bin(np.rint(velocity).astype(np.int64), vocab.config.velocity_bins)
    out = ids.copy()
    out[is_velocity] = vocab.offsets[TokenType.VELOCITY] + new_bin
    return out


def jitter_velocity(ids: np.ndarray, vocab: Vocabulary, deltas: np.ndarray) -> np.ndarray:
    """Add ``deltas[j]`` bins to the j-th Velocity token, clipped to the velocity bins."""
    is_velocity = vocab.types[ids] == TokenType.VELOCITY
    bins = vocab.values[ids[is_velocity]] + deltas
    out = ids.copy()
    out[is_velocity] = vocab.offsets[TokenType.VELOCITY] + np.clip(
        bins, 0, vocab.counts[TokenType.VELOCITY] - 1
    )
    return out


def family_mapping(rng: np.random.Generator) -> np.ndarray:
    """A random program -> program table (129 entries) that permutes each GM family of eight
    and keeps drums."""
    families = np.arange(128).reshape(-1, FAMILY_SIZE)
    mapping = rng.permuted(families, axis=1).ravel()
    return np.append(mapping, DRUM_PROGRAM)


def substitute_programs(ids: np.ndarray, vocab: Vocabulary, mapping: np.ndarray) -> np.ndarray:
    """Replace every Program token's program ``p`` by ``mapping[p]``."""
    is_program = vocab.types[ids] == TokenType.PROGRAM
    out = ids.copy()
    out[is_program] = vocab.offsets[TokenType.PROGRAM] + mapping[vocab.values[ids[is_program]]]
    return out


def _positions(ids: np.ndarray, vocab: Vocabulary, bar_steps: int):
    """Index, value, bar number and bar length (0: unknown) of every Position token."""
    types = vocab.types[ids]
    index = np.flatnonzero(types == TokenType.POSITION)
    bar = np.cumsum(types == TokenType.BAR)[index]
    is_sig = types == TokenType.TIMESIG
    last_sig = np.maximum.accumulate(np.where(is_sig, np.arange(len(ids)), -1))[index]
    length = np.where(last_sig >= 0, vocab.bar_steps[ids[np.maximum(last_sig, 0)]], bar_steps)
    return index, vocab.values[ids[index]], bar, length


def swing_deltas(ids: np.ndarray, vocab: Vocabulary, steps: int) -> np.ndarray:
    """Wanted moves per Position token: ``steps`` later for every off-beat eighth (half-way
    through a quarter), 0 elsewhere. Nothing moves when a quarter has an odd number of steps."""
    spq = vocab.config.steps_per_quarter
    index = np.flatnonzero(vocab.types[ids] == TokenType.POSITION)
    if spq % 2:
        return np.zeros(len(index), np.int64)
    return np.where(vocab.values[ids[index]] % spq == spq // 2, steps, 0).astype(np.int64)


def shift_positions(ids: np.ndarray, vocab: Vocabulary, deltas: np.ndarray,
                    bar_steps: int = 0) -> np.ndarray:  # fmt: skip
    """Move the j-th Position token by ``deltas[j]`` steps, as far as it can go.

    Each move is clipped so that a position stays at or after 0, before the end of its bar,
    and less than half-way to its neighbours in the bar; positions stay strictly increasing.

    Args:
        ids: the window.
        vocab: the vocabulary.
        deltas: wanted move of each Position token, in grid steps.
        bar_steps: length of the bar in force at the window's start (before its first
            TimeSig); 0 when unknown, in which case the last position of those bars never
            moves later.
    """
    index, value, bar, length = _positions(ids, vocab, bar_steps)
    if not len(index):
        return ids.copy()
    first = np.append(True, bar[1:] != bar[:-1])
    last = np.append(bar[1:] != bar[:-1], True)
    gap_before = np.diff(value, prepend=0)
    gap_after = np.diff(value, append=0)
    lo = np.where(first, -value, -((gap_before - 1) // 2))
    hi = np.where(last, np.maximum(length - 1 - value, 0), (gap_after - 1) // 2)
    moved = value + np.clip(deltas, lo, hi)
    out = ids.copy()
    out[index] = vocab.offsets[TokenType.POSITION] + moved
    return out


def probability_at(p: float, schedule: ScheduleConfig, step: int) -> float:
    """An augmentation's probability at a training step: ``p`` (constant), or for a ramp 0
    before ``schedule.start``, rising linearly to ``p`` at ``schedule.end``."""
    if schedule.kind == "constant" or step >= schedule.end:
        return p
    if step < schedule.start:
        return 0.0
    return p * (step - schedule.start) / (schedule.end - schedule.start)


def _stream(seed: int, index: int, stream: int, p: float) -> np.random.Generator | None:
    """The window's generator for one augmentation if it is applied this time, else None."""
    if p <= 0:
        return None
    rng = np.random.default_rng((seed, index, stream))
    return rng if p >= 1 or rng.random() < p else None


def transposition_applies(config: AugmentConfig, seed: int, index: int, step: int) -> bool:
    """Whether window ``index`` is transposed at ``step`` (its shift comes from the window's
    own generator, so that a transposition always on draws exactly what it always drew)."""
    p = probability_at(config.transpose.p, config.transpose.schedule, step)
    return _stream(seed, index, STREAM_TRANSPOSE, p) is not None


def augment_window(ids: np.ndarray, vocab: Vocabulary, config: AugmentConfig, seed: int,
                   index: int, step: int, bar_steps: int = 0) -> np.ndarray:  # fmt: skip
    """Apply tempo, velocity, instrument and humanizing augmentations to window ``index``,
    each with its probability at ``step``, in that order (transposition is drawn apart, with
    the window's start; see ``transposition_applies``).

    Args:
        ids: the window (starting at a Bar or BOS).
        vocab: the vocabulary.
        config: probabilities, ranges and schedules.
        seed: the dataset's seed.
        index: the window's index in the dataset.
        step: the training step the window is for.
        bar_steps: length of the bar in force at the window's start (0 when unknown).
    """

    def drawn(stream: int, augmentation) -> np.random.Generator | None:
        p = probability_at(augmentation.p, augmentation.schedule, step)
        return _stream(seed, index, stream, p)

    if (rng := drawn(STREAM_TEMPO, config.tempo)) is not None:
        lo, hi = tempo_shift_range(ids, vocab, config.tempo.min_factor, config.tempo.max_factor)
        ids = stretch_tempo(ids, vocab, int(rng.integers(lo, hi + 1)))
    if (rng := drawn(STREAM_VELOCITY, config.velocity)) is not None:
        factor = rng.uniform(config.velocity.min_factor, config.velocity.max_factor)
        ids = scale_velocity(ids, vocab, factor)
    if (rng := drawn(STREAM_PROGRAMS, config.instruments)) is not None:
        ids = substitute_programs(ids, vocab, family_mapping(rng))
    if (rng := drawn(STREAM_HUMANIZE, config.humanize)) is not None:
        h = config.humanize
        n_pos = int((vocab.types[ids] == TokenType.POSITION).sum())
        wanted = rng.integers(-h.timing_steps, h.timing_steps + 1, n_pos)
        wanted += swing_deltas(ids, vocab, h.swing_steps)
        ids = shift_positions(ids, vocab, wanted, bar_steps)
        n_vel = int((vocab.types[ids] == TokenType.VELOCITY).sum())
        ids = jitter_velocity(
            ids, vocab, rng.integers(-h.velocity_bins, h.velocity_bins + 1, n_vel)
        )
    return ids
