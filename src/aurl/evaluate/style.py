"""Is a piece's style recognisable? A small classifier of corpora from musical features.

Each piece becomes a vector of features that do not depend on its key or its instruments:
the pitch classes relative to the piece's estimated tonic and its mode, the note-length
histogram, and scalar measures of range, polyphony, rhythm, intervals, scale use and notes
per bar. A multinomial logistic regression (numpy, L2-regularised, full-batch gradient
descent on standardised features) learns the corpora from real training pieces; its accuracy
on held-out real pieces says how far the features tell the corpora apart, and its accuracy
on samples asked for a style says whether a model writes that style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aurl.evaluate.features import (
    empty_beat_rate,
    estimate_key,
    groove_consistency,
    inter_onset_interval,
    n_pitch_classes_used,
    note_length_histogram,
    pitch_class_entropy,
    pitch_class_histogram,
    pitch_entropy,
    pitch_interval,
    pitch_range,
    polyphony,
    polyphony_rate,
    scale_consistency,
)
from aurl.evaluate.notes import Notes

SCALARS = (pitch_range, n_pitch_classes_used, polyphony, polyphony_rate, scale_consistency,
           pitch_entropy, pitch_class_entropy, empty_beat_rate, groove_consistency,
           pitch_interval, inter_onset_interval)  # fmt: skip


def style_vector(notes: Notes) -> np.ndarray:
    """The features of one piece (NaN where a feature is undefined, such as an empty piece)."""
    key = estimate_key(notes) if len(notes) else 0
    classes = np.roll(np.nan_to_num(pitch_class_histogram(notes)), -(key % 12))
    per_bar = len(notes) / max(notes.num_bars, 1)
    scalars = [float(f(notes)) for f in SCALARS] + [per_bar, float(key >= 12)]
    lengths = np.nan_to_num(note_length_histogram(notes))
    return np.concatenate([classes, lengths, scalars]).astype(np.float64)


@dataclass
class StyleClassifier:
    """Corpus names from feature vectors (see :func:`fit_styles`)."""

    names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # (features + 1, classes), the last row the bias

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(pieces, classes) probabilities of the feature rows ``x``."""
        z = _design(_standardise(x, self.mean, self.scale))
        return _softmax(z @ self.weights)

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.names[i] for i in self.probabilities(x).argmax(1)]

    def accuracy(self, x: np.ndarray, labels: list[str]) -> float:
        """The share of rows whose predicted corpus is their label."""
        if not len(labels):
            return float("nan")
        return float(np.mean([p == t for p, t in zip(self.predict(x), labels, strict=True)]))


def fit_styles(x: np.ndarray, labels: list[str], l2: float = 1e-2, steps: int = 600,
               lr: float = 0.5) -> StyleClassifier:  # fmt: skip
    """Fit the classifier on feature rows ``x`` (pieces, features) and their corpus names.
    Classes are weighted so that every corpus counts the same, whatever its size."""
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError("style classifier: needs pieces of at least two corpora")
    y = np.array([names.index(t) for t in labels])
    mean = np.nanmean(x, 0)
    scale = np.nanstd(x, 0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = _design(_standardise(x, mean, scale))
    target = np.eye(len(names))[y]
    counts = np.bincount(y, minlength=len(names))
    weight = (len(y) / (len(names) * counts))[y][:, None]  # balanced classes
    w = np.zeros((z.shape[1], len(names)))
    for _ in range(steps):
        grad = z.T @ (weight * (_softmax(z @ w) - target)) / len(y)
        grad[:-1] += l2 * w[:-1]
        w -= lr * grad
    return StyleClassifier(names, mean, scale, w)


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.nan_to_num((np.asarray(x, np.float64) - mean) / scale)


def _design(z: np.ndarray) -> np.ndarray:
    return np.concatenate([z, np.ones((len(z), 1))], 1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
