"""Structure and melody analysis on built pieces: form, repeats, intensity, contour, motifs."""

from __future__ import annotations

import numpy as np

from aurl.analysis.analyze import analyze_piece
from aurl.analysis.melody import (
    contour_class,
    find_motifs,
    interval_histogram,
    phrase_boundaries,
    scale_of,
    top_voice,
)
from aurl.analysis.structure import bar_similarity, find_repeats, form_label, intensity, sections
from test_analysis_helpers import Q, aaba_piece, make_piece, melody_piece


def test_aaba_form_and_repeats():
    piece = aaba_piece()
    sim = bar_similarity(piece)
    assert sim.shape == (32, 32)
    assert np.allclose(np.diag(sim), 1.0)
    assert sim[0, 8] > 0.99 and sim[0, 16] < 0.5
    repeats = find_repeats(sim)
    pairs = {(r.first, r.second, r.length) for r in repeats if r.length >= 8}
    assert {(0, 8, 8), (0, 24, 8), (8, 24, 8)} <= pairs
    parts = sections(sim, repeats)
    assert form_label(parts) == "AABA"
    assert [(s.start, s.end) for s in parts] == [(0, 8), (8, 16), (16, 24), (24, 32)]


def test_through_composed_piece_has_no_repeats():
    rng = np.random.default_rng(1)
    n = 16 * 8
    piece = make_piece(np.arange(n) * Q // 2, np.full(n, Q // 2), rng.integers(40, 90, n))
    sim = bar_similarity(piece)
    assert find_repeats(sim) == []
    assert form_label(sections(sim, [])) == "A"


def test_intensity_climax_at_the_loud_high_dense_bar():
    time, dur, pitch, vel = [], [], [], []
    for bar in range(8):
        notes = 2 if bar != 5 else 8
        for k in range(notes):
            time.append(bar * 4 * Q + k * 4 * Q // notes)
            dur.append(4 * Q // notes)
            pitch.append(60 + (12 if bar == 5 else 0))
            vel.append(50 if bar != 5 else 110)
    curve = intensity(make_piece(time, dur, pitch, np.array(vel)), smooth=1)
    assert int(np.argmax(curve["intensity"])) == 5
    assert curve["density"][5] == 2.0 and curve["density"][0] == 0.5
    assert curve["loudness"][5] == 110


def test_contour_classes():
    assert contour_class([60, 62, 64, 65, 67]) == "ascending"
    assert contour_class([67, 65, 64, 62, 60]) == "descending"
    assert contour_class([60, 64, 67, 72, 67, 64, 60]) == "arch"
    assert contour_class([72, 67, 64, 60, 64, 67, 72]) == "bow"
    assert contour_class([60, 60, 61, 60, 60]) == "horizontal"


def test_motif_found_at_every_occurrence():
    motif = [60, 62, 64, 60]  # intervals +2 +2 -4
    filler = [[67, 65, 71], [57, 69, 53, 59], [70, 58]]
    pitches = motif + filler[0] + motif + filler[1] + [x + 5 for x in motif] + filler[2]
    melody = top_voice(melody_piece(pitches))
    motifs = find_motifs(melody, min_len=3)
    assert motifs, "no motif found"
    best = motifs[0]
    assert best.intervals == (2, 2, -4)
    assert best.starts == (0, 7, 15)  # transposed copies count too


def test_interval_histogram_and_scale():
    melody = top_voice(melody_piece([60, 62, 64, 65, 67, 69, 71, 72, 84, 60]))
    hist = interval_histogram(melody)
    assert hist["2"] == 5 and hist["1"] == 2 and hist["12"] == 1 and hist["< -12"] == 1
    assert sum(hist.values()) == 9
    assert scale_of(melody, 0)["name"] == "C major (ionian)"
    minor = top_voice(melody_piece([57, 59, 60, 62, 64, 65, 67, 69, 57]))
    assert scale_of(minor, 9)["name"] == "A natural minor (aeolian)"
    dorian = top_voice(melody_piece([62, 64, 65, 67, 69, 71, 72, 74, 62]))
    assert scale_of(dorian, 2)["scale"] == "dorian"


def test_top_voice_takes_the_highest_line():
    # Soprano whole notes over moving inner voices: the inner notes must not leak in.
    time = [0, 0, 12, 24, 36, 48, 48]
    dur = [48, 12, 12, 12, 12, 48, 48]
    pitch = [72, 60, 62, 64, 65, 74, 60]
    melody = top_voice(make_piece(time, dur, pitch))
    assert melody.pitch.tolist() == [72, 74]
    assert melody.time.tolist() == [0, 48]


def test_phrases_split_at_long_notes():
    # Three four-bar phrases of quarter notes, each ending on a whole note.
    pitches, durs = [], []
    for start in (60, 64, 67):
        pitches += [start, start + 2, start + 4, start + 2] * 3 + [start]
        durs += [1] * 12 + [4]
    starts = phrase_boundaries(top_voice(melody_piece(pitches, durs)))
    assert starts.tolist() == [0, 13, 26]


def test_full_analysis_of_aaba_is_consistent():
    summary = analyze_piece(aaba_piece()).summary
    assert summary["structure"]["form"] == "AABA"
    assert summary["key"]["global"]["name"] == "C major"
    assert summary["meter"]["bars"] == 32 and summary["meter"]["pickup_beats"] == 0
    per_beat = summary["harmony"]["per_beat"]["symbol"]
    assert len(per_beat) == 32 * 4
    assert per_beat[0].startswith("C") and per_beat[8 * 4].startswith("C")  # both As start on C
    assert len(summary["structure"]["similarity"]) == 32
    assert summary["melody"]["motifs"], "the repeated A melody is a motif"


def test_tiny_and_compound_meter_pieces_are_analysed():
    one = analyze_piece(make_piece([0], [Q], [60])).summary
    assert one["meter"]["beats"] == 1 and one["structure"]["form"] == "A"
    assert one["harmony"]["per_beat"]["symbol"] == ["C"]  # a lone note reads as its major triad
    # 6/8: two dotted-quarter beats per bar, a pickup of one eighth.
    n = 48
    piece = make_piece(
        np.arange(n) * Q // 2, np.full(n, Q // 2), 60 + np.arange(n) % 8,
        beats_per_bar=2, beat_steps=3 * Q // 2, pickup=Q // 2,
    )  # fmt: skip
    summary = analyze_piece(piece).summary
    assert summary["meter"]["pickup_beats"] == round(1 / 3, 3)
    assert summary["meter"]["bars"] == 9
    first = summary["harmony"]["chords"][0]["start"]
    assert first == {"bar": 0, "beat": round(1 + 30 / 18, 3), "quarter": 0.0}
