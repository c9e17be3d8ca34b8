"""A piano roll as an RGB array: one row per pitch, one column per grid step, a colour per
track. Used for TensorBoard previews; pure numpy, no plotting library."""

from __future__ import annotations

import numpy as np
import symusic

COLOURS = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
     [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127]],
    dtype=np.uint8,
)  # fmt: skip


def piano_roll(score: symusic.Score, steps_per_quarter: int = 4, max_width: int = 1024,
               row_height: int = 2) -> np.ndarray:  # fmt: skip
    """(H, W, 3) uint8 picture of ``score``: pitch upward, time to the right, white ground.

    The pitch range is that of the notes plus two semitones either side (an octave around
    middle C when there are none); time is cut at ``max_width`` columns.
    """
    tpq = max(int(score.ticks_per_quarter), 1)
    tracks = [t.notes.numpy() for t in score.tracks]
    pitches = np.concatenate([n["pitch"] for n in tracks]) if tracks else np.zeros(0, np.int64)
    low, high = (int(pitches.min()) - 2, int(pitches.max()) + 2) if len(pitches) else (54, 72)
    low, high = max(low, 0), min(high, 127)
    ends = [
        ((n["time"] + n["duration"]) * steps_per_quarter) // tpq for n in tracks if len(n["time"])
    ]
    width = int(min(max([int(e.max()) for e in ends], default=1) + 1, max_width))
    image = np.full((high - low + 1, width, 3), 255, np.uint8)
    for k, notes in enumerate(tracks):
        on = (notes["time"] * steps_per_quarter) // tpq
        off = np.maximum(((notes["time"] + notes["duration"]) * steps_per_quarter) // tpq, on + 1)
        for start, stop, pitch in zip(on, np.minimum(off, width), notes["pitch"], strict=True):
            if start < width:
                image[high - int(pitch), int(start) : int(stop)] = COLOURS[k % len(COLOURS)]
    return np.repeat(image, row_height, axis=0)
