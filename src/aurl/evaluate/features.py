"""Per-piece features: MusPy's metrics and the Yang & Lerch (2018) features, on :class:`Notes`.

MusPy definitions (``muspy/metrics/metrics.py``) are followed, with ``resolution`` = the
grid's steps per quarter. Deliberate differences, each for a reason:

* ``empty_beat_rate``: a note sounds in the beats from ``start // res`` to
  ``(end - 1) // res`` and the piece has ``ceil(length / res)`` beats. MusPy's code also
  marks the beat in which a note *ends* (``end // res``) and counts ``length // res + 1``
  beats, so a note ending on a beat line fills the next beat and a piece that ends on a beat
  line gets an extra one; its docstring ("beats where no note is played") is what we follow.
* ``groove_consistency``: onsets are placed on the piece's real bar lines (so meter changes
  work; MusPy assumes one constant ``measure_resolution``) and only the bars the piece spans
  are compared (MusPy adds an empty bar after a piece that ends on a bar line).
* ``pitch_in_scale_rate``: MusPy takes the scale as an argument; we use the piece's own key,
  estimated by correlating its duration-weighted pitch-class histogram with the
  Krumhansl–Kessler profiles (scale masks as in MusPy: major and natural minor).
* ``pitch_range`` is 0 when a piece has no pitched notes (MusPy gives -127 for drums only).

Yang & Lerch features (their ``mgeval`` toolbox reads one track of a MIDI file; ours read
every pitched note, since generated pieces have no voices to pick from):

* ``pitch_class_histogram``: duration-weighted (mgeval weighs by velocity x seconds).
* ``pitch_class_transition``: counts note pairs of one program where one note ends exactly
  when the other starts (pretty_midi uses a 50 ms tolerance; the grid makes it exact),
  normalized to sum 1.
* ``pitch_interval``: mean absolute interval between consecutive notes of each program, in
  (onset, pitch) order.
* ``inter_onset_interval``: mean time between consecutive distinct onsets, in quarters
  (mgeval: seconds, counting chord notes as zero intervals).
* ``note_length_histogram`` / ``note_length_transition``: the 12 classes of mgeval (whole
  to 8th-note triplet, dotted values included) measured in quarters instead of 96ths of the
  bar, so they do not depend on the meter; both normalized to sum 1.

Every function returns NaN where MusPy does (no notes, too few bars, no drums).

Pieces reach these functions as token ids turned into :class:`Notes`, so generated pieces
and MIDI files alike are measured on the tokenizer's grid (12 steps per quarter by default).
``benchmarks/bench_evaluate_muspy.py`` compares the MusPy features with MusPy 0.5.0 itself
on 100 chorales: identical but for the two deliberate differences and a few durations that
the two libraries round onto the grid differently.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aurl.evaluate.notes import Notes

NAN = float("nan")

# Scale masks for root C, as in MusPy; the others are rolls.
MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
SCALES = np.stack([np.roll(MAJOR, r) for r in range(12)] + [np.roll(MINOR, r) for r in range(12)])
# Krumhansl–Kessler key profiles (C major, C minor).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PROFILES = np.stack(
    [np.roll(KK_MAJOR, r) for r in range(12)] + [np.roll(KK_MINOR, r) for r in range(12)]
)
# mgeval's note length classes, in quarters: whole, half, quarter, 8th, 16th, dotted half,
# dotted quarter, dotted 8th, dotted 16th, half triplet, quarter triplet, 8th triplet.
LENGTH_CLASSES = np.array([4, 2, 1, 1 / 2, 1 / 4, 3, 3 / 2, 3 / 4, 3 / 8, 4 / 3, 2 / 3, 1 / 3])
LENGTH_NAMES = (
    "1",
    "1/2",
    "1/4",
    "1/8",
    "1/16",
    "1/2.",
    "1/4.",
    "1/8.",
    "1/16.",
    "1/2t",
    "1/4t",
    "1/8t",
)
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _pitched(n: Notes) -> np.ndarray:
    return ~n.is_drum


def _length(n: Notes) -> int:
    return int(n.end.max()) if len(n) else 0


def _entropy(counts: np.ndarray) -> float:
    total = counts.sum()
    if total < 1:
        return NAN
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def pianoroll(n: Notes) -> np.ndarray:
    """Boolean (time steps, 128) roll of the pitched notes, as long as the whole piece."""
    length = _length(n)
    m = _pitched(n)
    diff = np.zeros((length + 1, 128), np.int32)
    np.add.at(diff, (n.time[m], n.pitch[m]), 1)
    np.add.at(diff, (n.end[m], n.pitch[m]), -1)
    return np.cumsum(diff, axis=0)[:length] > 0


# MusPy metrics ------------------------------------------------------------------------


def pitch_range(n: Notes) -> float:
    """Highest minus lowest pitch of the pitched notes (0 if none)."""
    p = n.pitch[_pitched(n)]
    return float(p.max() - p.min()) if len(p) else 0.0


def n_pitches_used(n: Notes) -> float:
    """Number of distinct pitches (drums ignored)."""
    return float(len(np.unique(n.pitch[_pitched(n)])))


def n_pitch_classes_used(n: Notes) -> float:
    """Number of distinct pitch classes (drums ignored)."""
    return float(len(np.unique(n.pitch[_pitched(n)] % 12)))


def polyphony(n: Notes) -> float:
    """Mean number of pitches on, over the time steps where at least one is on."""
    counts = pianoroll(n).sum(axis=1)
    on = np.count_nonzero(counts)
    return float(counts.sum() / on) if on else NAN


def polyphony_rate(n: Notes, threshold: int = 2) -> float:
    """Share of time steps with more than ``threshold`` pitches on (MusPy's ``>``)."""
    roll = pianoroll(n)
    return float(np.count_nonzero(roll.sum(axis=1) > threshold) / len(roll)) if len(roll) else NAN


def _pitch_class_counts(n: Notes, weights: np.ndarray | None = None) -> np.ndarray:
    m = _pitched(n)
    w = None if weights is None else weights[m]
    return np.bincount(n.pitch[m] % 12, weights=w, minlength=12).astype(np.float64)


def estimate_key(n: Notes) -> int:
    """Index into ``SCALES`` (0-11 major roots, 12-23 minor roots) of the best-matching key
    by Krumhansl–Kessler correlation; -1 if there are no pitched notes."""
    hist = _pitch_class_counts(n, n.duration.astype(np.float64))
    if hist.sum() == 0:
        return -1
    h = hist - hist.mean()
    p = PROFILES - PROFILES.mean(axis=1, keepdims=True)
    return int(np.argmax(p @ h / np.linalg.norm(p, axis=1)))  # correlation up to |h|


def pitch_in_scale_rate(n: Notes, key: int | None = None) -> float:
    """Share of pitched notes in the scale of ``key`` (default: the estimated key)."""
    counts = _pitch_class_counts(n)
    key = estimate_key(n) if key is None else key
    if counts.sum() < 1 or key < 0:
        return NAN
    return float(counts[SCALES[key]].sum() / counts.sum())


def scale_consistency(n: Notes) -> float:
    """Largest pitch-in-scale rate over the 12 major and 12 minor scales."""
    counts = _pitch_class_counts(n)
    total = counts.sum()
    return float((SCALES @ counts).max() / total) if total >= 1 else NAN


def pitch_entropy(n: Notes) -> float:
    """Shannon entropy (bits) of the note pitch histogram."""
    return _entropy(np.bincount(n.pitch[_pitched(n)], minlength=128))


def pitch_class_entropy(n: Notes) -> float:
    """Shannon entropy (bits) of the note pitch-class histogram."""
    return _entropy(_pitch_class_counts(n))


def empty_beat_rate(n: Notes) -> float:
    """Share of beats (quarters) in which no note, drums included, is sounding."""
    res, length = n.steps_per_quarter, _length(n)
    if length < 1:
        return NAN
    beats = -(-length // res)
    diff = np.zeros(beats + 1, np.int64)
    np.add.at(diff, n.time // res, 1)
    np.add.at(diff, (n.end - 1) // res + 1, -1)
    return float(1 - np.count_nonzero(np.cumsum(diff)[:beats]) / beats)


def groove_consistency(n: Notes) -> float:
    """1 minus the mean Hamming distance of the onset patterns of neighbouring bars, per bar
    position (drums included); NaN for fewer than two bars."""
    length = _length(n)
    starts = n.bar_starts[n.bar_starts < max(length, 1)] if n.num_bars else np.zeros(1, np.int64)
    if len(starts) < 2:
        return NAN
    width = int(max(np.diff(starts).max(), length - starts[-1]))
    bar = np.searchsorted(starts, n.time, side="right") - 1
    patterns = np.zeros((len(starts), width), bool)
    patterns[bar, n.time - starts[bar]] = True
    hamming = np.count_nonzero(patterns[:-1] != patterns[1:])
    return float(1 - hamming / (width * (len(starts) - 1)))


def drum_pattern_consistency(n: Notes) -> float:
    """Largest share of drum onsets on a duple or a triple beat subdivision (MusPy)."""
    res = n.steps_per_quarter
    where = n.time[n.is_drum] % res
    if not len(where):
        return NAN
    duple = np.zeros(res, bool)
    duple[0] = True
    if res % 4 == 0:
        duple[:: res // 4] = True
    if res % 2 == 0:
        duple[:: res // 2] = True
    triple = np.zeros(res, bool)
    triple[0] = True
    if res % 3 == 0:
        triple[:: res // 3] = True
    return float(max(duple[where].mean(), triple[where].mean()))


# Yang & Lerch features ------------------------------------------------------------------


def note_count(n: Notes) -> float:
    """Number of pitched notes."""
    return float(np.count_nonzero(_pitched(n)))


def pitch_class_histogram(n: Notes) -> np.ndarray:
    """Duration-weighted pitch-class histogram (12), summing to 1 (zeros if no notes)."""
    hist = _pitch_class_counts(n, n.duration.astype(np.float64))
    return hist / hist.sum() if hist.sum() else hist


def _normalized(matrix: np.ndarray) -> np.ndarray:
    total = matrix.sum()
    return matrix / total if total else matrix


def pitch_class_transition(n: Notes) -> np.ndarray:
    """(12, 12) counts of pitch-class transitions a -> b, where note b of the same program
    starts exactly when note a ends; normalized to sum 1."""
    m = _pitched(n)
    prog, time, end, pc = n.program[m], n.time[m], n.end[m], n.pitch[m] % 12
    span = int(end.max()) + 1 if len(end) else 1
    start_key = prog * span + time
    order = np.argsort(start_key, kind="stable")
    sorted_keys = start_key[order]
    end_key = prog * span + end
    lo = np.searchsorted(sorted_keys, end_key, side="left")
    hi = np.searchsorted(sorted_keys, end_key, side="right")
    src = np.repeat(np.arange(len(end_key)), hi - lo)
    # Targets: for each source, the run sorted_keys[lo:hi].
    offsets = np.arange(len(src)) - np.repeat(np.cumsum(hi - lo) - (hi - lo), hi - lo)
    dst = order[np.repeat(lo, hi - lo) + offsets]
    counts = np.bincount(pc[src] * 12 + pc[dst], minlength=144).astype(np.float64)
    return _normalized(counts.reshape(12, 12))


def _by_program(n: Notes) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the pitched notes ordered by (program, time, pitch), and a mask of the
    consecutive pairs that belong to the same program."""
    idx = np.flatnonzero(_pitched(n))
    idx = idx[np.lexsort((n.pitch[idx], n.time[idx], n.program[idx]))]
    same = n.program[idx][1:] == n.program[idx][:-1]
    return idx, same


def pitch_interval(n: Notes) -> float:
    """Mean absolute interval (semitones) between consecutive notes of each program."""
    idx, same = _by_program(n)
    steps = np.abs(np.diff(n.pitch[idx]))[same]
    return float(steps.mean()) if len(steps) else NAN


def inter_onset_interval(n: Notes) -> float:
    """Mean time (quarters) between consecutive distinct onsets."""
    onsets = np.unique(n.time)
    return float(np.diff(onsets).mean() / n.steps_per_quarter) if len(onsets) > 1 else NAN


def length_classes(n: Notes, idx: np.ndarray) -> np.ndarray:
    """mgeval's nearest note-length class (0-11) of the notes ``idx``."""
    quarters = n.duration[idx] / n.steps_per_quarter
    return np.abs(quarters[:, None] - LENGTH_CLASSES[None, :]).argmin(axis=1)


def note_length_histogram(n: Notes) -> np.ndarray:
    """Histogram (12) of the pitched notes' length classes, summing to 1."""
    classes = length_classes(n, np.flatnonzero(_pitched(n)))
    return _normalized(np.bincount(classes, minlength=12).astype(np.float64))


def note_length_transition(n: Notes) -> np.ndarray:
    """(12, 12) transitions between the length classes of consecutive notes of a program,
    normalized to sum 1."""
    idx, same = _by_program(n)
    classes = length_classes(n, idx)
    pairs = classes[:-1][same] * 12 + classes[1:][same]
    return _normalized(np.bincount(pairs, minlength=144).astype(np.float64).reshape(12, 12))


# name -> (function, source, description)
FEATURES: dict[str, tuple[Callable[[Notes], float | np.ndarray], str, str]] = {
    "pitch_range": (pitch_range, "MusPy", "highest minus lowest pitch"),
    "n_pitches_used": (n_pitches_used, "MusPy", "distinct pitches"),
    "n_pitch_classes_used": (n_pitch_classes_used, "MusPy", "distinct pitch classes"),
    "polyphony": (polyphony, "MusPy", "mean pitches on when any is on"),
    "polyphony_rate": (polyphony_rate, "MusPy", "share of steps with more than 2 pitches on"),
    "pitch_in_scale_rate": (pitch_in_scale_rate, "MusPy", "share of notes in the piece's key"),
    "scale_consistency": (scale_consistency, "MusPy", "best in-scale rate over 24 keys"),
    "pitch_entropy": (pitch_entropy, "MusPy", "entropy of the pitch histogram (bits)"),
    "pitch_class_entropy": (pitch_class_entropy, "MusPy", "entropy of the pitch classes (bits)"),
    "empty_beat_rate": (empty_beat_rate, "MusPy", "share of silent beats"),
    "groove_consistency": (groove_consistency, "MusPy", "onset-pattern similarity of bars"),
    "drum_pattern_consistency": (drum_pattern_consistency, "MusPy", "drum onsets on the beat grid"),
    "note_count": (note_count, "Yang & Lerch", "pitched notes"),
    "pitch_interval": (pitch_interval, "Yang & Lerch", "mean |interval| between notes"),
    "inter_onset_interval": (inter_onset_interval, "Yang & Lerch", "mean IOI (quarters)"),
    "pitch_class_histogram": (pitch_class_histogram, "Yang & Lerch", "12 bins"),
    "pitch_class_transition": (pitch_class_transition, "Yang & Lerch", "12 x 12"),
    "note_length_histogram": (note_length_histogram, "Yang & Lerch", "12 length classes"),
    "note_length_transition": (note_length_transition, "Yang & Lerch", "12 x 12"),
}


def piece_features(n: Notes) -> dict[str, float | np.ndarray]:
    """Every feature of one piece."""
    return {name: fn(n) for name, (fn, _, _) in FEATURES.items()}


def set_features(pieces: list[Notes]) -> dict[str, np.ndarray]:
    """Every feature over a set: name -> (pieces, ...) float array (NaN where undefined)."""
    rows = [piece_features(p) for p in pieces]
    return {
        name: np.array([np.asarray(r[name], np.float64) for r in rows], np.float64)
        for name in FEATURES
    }


def is_scalar(values: np.ndarray) -> bool:
    """Whether a set's feature array holds one number per piece."""
    return values.ndim == 1
