"""Key, chord and Roman-numeral analysis on built music with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from aurl.analysis.chords import QUALITIES, QUALITY_NAMES, chord_symbol, identify
from aurl.analysis.harmony import analyze_harmony
from aurl.analysis.key import find_key, key_correlations, key_name, local_keys, viterbi
from aurl.analysis.piece import guess_pickup, piece_from_score, pitched_notes
from aurl.analysis.progressions import chord_spans, classify_cadence
from aurl.analysis.roman import roman_numeral
from test_analysis_helpers import Q, cadence, chord_piece, make_piece

SYMMETRIC = {"aug": 4, "dim7": 3}  # roots an interval apart that give the same pitch classes


@pytest.mark.parametrize("quality", [q[0] for q in QUALITIES if q[0] != "sus4"])
@pytest.mark.parametrize("root", range(12))
def test_chords_in_every_inversion(quality, root):
    intervals = dict((q[0], q[1]) for q in QUALITIES)[quality]
    tones = [48 + root + i for i in intervals]
    for inversion in range(len(tones)):
        voicing = tones[inversion:] + [t + 12 for t in tones[:inversion]]
        voicing = voicing + [voicing[0] + 12]  # a doubled bass, as in four-part writing
        found_root, found_quality, found_inv = identify(voicing)
        assert found_quality == quality, (voicing, found_quality)
        if quality in SYMMETRIC:
            assert (found_root - root) % SYMMETRIC[quality] == 0
        else:
            assert found_root == root % 12
            assert found_inv == inversion


def test_sus4_and_an_incomplete_dominant_seventh():
    assert identify([60, 65, 67])[:2] == (0, "sus4")
    assert identify([55, 59, 65, 67])[:2] == (7, "dom7")  # G B F (no D)


@pytest.mark.parametrize("key", range(24))
def test_key_of_a_cadence_in_all_24_keys(key):
    tonic, mode = key % 12, "major" if key < 12 else "minor"
    harmony = analyze_harmony(chord_piece(cadence(tonic, mode)))
    assert harmony.key.index == key, (key_name(key), harmony.key.name)
    assert harmony.key.confidence > 0
    expected = ["I", "IV", "V", "I"] if mode == "major" else ["i", "iv", "V", "i"]
    assert [harmony.numerals[i] for i in (0, 4, 8, 12)] == expected


def test_key_correlations_rank_the_built_histogram_first():
    hist = np.zeros(12)
    hist[[7, 9, 11, 0, 2, 4, 6]] = [5, 2, 3, 2, 3, 2, 2]  # G major scale, tonic weighted
    corr = key_correlations(hist)
    assert corr.shape == (24,)
    assert int(np.argmax(corr)) == 7
    with pytest.raises(ValueError):
        find_key(np.zeros(12))


def test_viterbi_switches_only_when_it_pays():
    scores = np.zeros((10, 2))
    scores[:, 0] = 1
    scores[4:6, 1] = 2  # two steps favour state 1 by 1 each
    assert viterbi(scores, switch_penalty=3.0).tolist() == [0] * 10
    assert viterbi(scores, switch_penalty=0.5).tolist() == [0] * 4 + [1, 1] + [0] * 4


def test_local_keys_follow_a_modulation():
    chords = cadence(0, "major") * 3 + cadence(7, "major") * 3  # C major, then G major
    piece = chord_piece(chords)
    beats = piece.beat_starts()
    from aurl.analysis.chroma import chroma, overlaps

    keys, _ = local_keys(chroma(piece, overlaps(piece, np.append(beats, piece.end))))
    assert keys[0] == 0 and keys[-1] == 7
    assert set(keys.tolist()) == {0, 7}


def test_chords_per_beat_and_numerals_with_passing_notes():
    # C: I (with a passing D in the soprano on the off-beat) - ii65 - V7 - I, two beats each.
    time = [0, 0, 0, 0, 18, 24, 24, 24, 24, 48, 48, 48, 48, 72, 72, 72, 72]
    dur = [24, 24, 24, 18, 6, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24, 24]
    pitch = [48, 55, 64, 72, 74, 53, 57, 62, 72, 43, 59, 65, 67, 48, 55, 64, 72]
    harmony = analyze_harmony(make_piece(time, dur, pitch))
    beat_numerals = harmony.numerals[::2]
    assert beat_numerals == ["I", "ii65", "V7", "I"]
    assert chord_symbol(7, QUALITY_NAMES.index("dom7"), 11) == "G7/B"
    spans = chord_spans(harmony.chords, harmony.local_key)
    assert [s.degree for s in spans] == ["I", "ii7", "V7", "I"]
    assert classify_cadence(spans[2], spans[3], 0) == "perfect authentic"


def test_a_pedal_bass_names_no_root_when_asked():
    from aurl.analysis.chords import ChordParams, recognize_chords
    from aurl.analysis.piece import Piece

    # C held two bars in the bass; C-E-G above it, then B-D#-F# (a dissonant chord over a
    # pedal): with a strong pull of the bass, C-D#-F# is a C diminished triad; as a pedal,
    # whose bass names no root, B major.
    spq = 12
    t = np.array([0, 0, 0, 0, 48, 48, 48])
    d = np.array([96, 48, 48, 48, 48, 48, 48])
    p = np.array([36, 60, 64, 67, 59, 63, 66])
    bars = np.array([0, 48, 96])
    piece = Piece("pedal", t, d, p, np.full(7, 80), spq, bars, np.full(3, spq), 1)
    beats, keys = np.arange(0, 97, spq), np.zeros(8, np.int64)
    off = recognize_chords(piece, beats, keys, ChordParams(bass_bonus=0.2))
    on = recognize_chords(piece, beats, keys, ChordParams(bass_bonus=0.2, pedal_beats=2.0))
    c_dim, b_major = (0, QUALITY_NAMES.index("dim")), (11, QUALITY_NAMES.index("maj"))
    assert (off.root[6], off.quality[6]) == c_dim
    assert (on.root[6], on.quality[6]) == b_major
    assert on.root[0] == off.root[0] == 0  # not yet held: the bass is the root
    assert on.bass[6] == 0 and on.inversion[6] == -1  # the label keeps the sounding bass


@pytest.mark.parametrize(
    ("root", "quality", "inversion", "tonic", "mode", "expected"),
    [
        (7, "dom7", 1, 0, "major", "V65"),
        (2, "maj", 0, 0, "major", "V/V"),
        (6, "dim7", 0, 0, "major", "viio7/V"),
        (11, "dim", 1, 0, "major", "viio6"),
        (8, "maj", 0, 0, "major", "bVI"),
        (3, "maj", 0, 0, "minor", "III"),
        (7, "maj", 2, 0, "minor", "V64"),
        (2, "hdim7", 3, 0, "minor", "iiø42"),
        (-1, "maj", 0, 0, "major", "N"),
    ],
)
def test_roman_numerals(root, quality, inversion, tonic, mode, expected):
    assert roman_numeral(root, quality, inversion, tonic, mode) == expected


def test_cadence_types():
    from aurl.analysis.progressions import Span

    def span(root, quality, inversion=0, key=0):
        return Span(0, 1, root, quality, inversion, key, "", "")

    assert classify_cadence(span(7, "dom7"), span(0, "maj"), 0) == "perfect authentic"
    assert classify_cadence(span(7, "dom7"), span(0, "maj", 1), 4) == "imperfect authentic"
    assert classify_cadence(span(5, "maj"), span(0, "maj"), 0) == "plagal"
    assert classify_cadence(span(7, "maj"), span(9, "min"), 0) == "deceptive"
    assert classify_cadence(span(7, "maj", key=12), span(8, "maj", key=12), 0) == "deceptive"
    assert classify_cadence(span(0, "maj"), span(7, "maj"), 7) == "half"
    assert classify_cadence(span(2, "min"), span(9, "min"), 9) is None


def test_pickup_is_found_from_where_long_notes_fall():
    # 4/4 with a one-beat pickup: half notes on every downbeat (steps 12, 60, ...).
    time = np.array([0] + [12 + 48 * k for k in range(6)] + [36 + 48 * k for k in range(6)])
    dur = np.array([12] + [24] * 6 + [12] * 6)
    assert guess_pickup(time, dur, 48, 12) == 12
    assert guess_pickup(time - 12 + 48, dur, 48, 12) == 0  # no pickup once shifted


def test_piece_from_score_drops_drums_and_matches_the_tokenizer_grid():
    from aurl.tokens.encode import score_to_notes

    rng = np.random.default_rng(0)
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 3, 4))
    for program, drum in ((0, False), (40, False), (0, True)):
        track = symusic.Track("t", program, drum)
        n = 50
        track.notes = symusic.Note.from_numpy(
            rng.integers(0, 480 * 30, n).astype(np.int32),
            rng.integers(1, 960, n).astype(np.int32),
            rng.integers(30, 90, n).astype(np.int8),
            rng.integers(1, 127, n).astype(np.int8),
        )
        score.tracks.append(track)
    ours = pitched_notes(score, Q)
    ref = score_to_notes(score, Q)
    keep = ref["program"] != 128
    for k in ("time", "duration", "pitch", "velocity"):
        assert sorted(zip(ours["time"], ours["pitch"], ours[k], strict=True)) == sorted(
            zip(ref["time"][keep], ref["pitch"][keep], ref[k][keep], strict=True)
        )
    piece = piece_from_score(score, "x")
    assert len(piece.time) == 100
    assert set(np.diff(piece.bar_starts).tolist()) == {3 * Q}
