"""Long-piece measures: loops, windows, key share and cadences on real and built music."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.analysis.piece import piece_from_score
from aurl.evaluate.long_pieces import (
    key_and_cadences,
    long_piece_report,
    longest_repeat,
    window_notes,
    windows,
)
from aurl.evaluate.notes import ids_to_notes
from aurl.tokens import Tokenizer

TK = Tokenizer()


def _score(bars: list[list[int]]) -> symusic.Score:
    """One 4/4 bar of quarter notes per list of pitches."""
    score = symusic.Score(480)
    track = symusic.Track(program=0)
    for b, pitches in enumerate(bars):
        for k, p in enumerate(pitches):
            track.notes.append(symusic.Note((4 * b + k) * 480, 480, p, 80))
    score.tracks.append(track)
    return score


def test_longest_repeat_counts_bars_repeated_verbatim():
    a, b, c, d = [60, 62, 64, 65], [67, 65, 64, 62], [60, 64, 67, 72], [59, 62, 67, 55]
    ids = TK.encode(_score([a, b, c, d, a, b, c, a]))
    assert longest_repeat(ids, TK.vocab) == 3  # a b c comes back
    assert longest_repeat(TK.encode(_score([a, b, c, d])), TK.vocab) == 0


def test_windows_split_a_piece_at_its_bar_lines():
    bars = [[60 + i, 62, 64, 65] for i in range(10)]
    notes = ids_to_notes(TK.encode(_score(bars)), TK.vocab)
    parts = windows(notes, 4)
    assert len(parts) == 2 and all(w.num_bars == 4 and len(w) == 16 for w in parts)
    second = window_notes(notes, 4, 4)
    assert second.time.min() == 0 and second.pitch[0] == 64  # bar 5 starts with 60 + 4


def test_a_diatonic_piece_stays_in_its_key_and_cadences():
    tonic, dominant = [48, 64, 67, 72], [43, 62, 67, 71]
    bars = [tonic, dominant, tonic, [53, 65, 69, 72], dominant, tonic] * 4
    score = _score(bars)
    study = key_and_cadences(piece_from_score(score, "built"), bars=8)
    assert study["key"] == "C major" and study["main_key_share"] > 0.9
    assert len(study["windows"]) == 3
    ids = TK.encode(score)
    notes = ids_to_notes(ids, TK.vocab)
    report = long_piece_report([ids] * 2, [notes] * 2, [score] * 2, [notes] * 2, TK.vocab)
    assert report["longest_repeat_bars"] == 18  # the six-bar pattern, three more times
    assert report["first"]["main_key_share"] > 0.9 and report["last"]["main_key_share"] > 0.9
    assert np.isclose(report["windows"][0]["mean_oa"], 1.0)  # a window against itself
    assert report["cadence_share"] is not None and report["cadence_share"] > 0
