"""Voice-leading counts on small part-writing examples with known answers."""

from __future__ import annotations

import numpy as np
import symusic

from aurl.evaluate.voice_leading import satb_tracks, sonorities, voice_leading


def _score(voices: dict[str, list[int]], beat: int = 480) -> symusic.Score:
    score = symusic.Score(beat)
    for name, pitches in voices.items():
        track = symusic.Track(name, 0, False)
        for k, p in enumerate(pitches):
            if p >= 0:
                track.notes.append(symusic.Note(k * beat, beat, p, 80))
        score.tracks.append(track)
    return score


def test_parallel_fifths_octaves_leaps_and_crossings():
    # C-G to D-A: parallel fifths; then the bass moves alone; the soprano rises a fifth
    # (not a leap), then falls a tenth and more below the bass (a leap and a crossing)
    score = _score({"Soprano": [67, 69, 69, 76, 60], "Bass": [60, 62, 64, 64, 64]})
    vl = voice_leading(score)
    assert vl.pair_moves == 1 and vl.parallels == 1  # only the first move has both moving
    assert vl.moves == 5 and vl.leaps == 1  # 3 soprano moves, 2 bass moves; 76 -> 60 leaps
    assert vl.sonorities == 5 and vl.crossings == 1  # 60 below 64 at the end
    assert vl.dissonant == 0  # fifths, a fourth, an octave and a third
    tense = voice_leading(_score({"Soprano": [71, 72, 66, 74], "Bass": [60, 60, 60, 60]}))
    assert tense.dissonant == 3 and tense.rates()["dissonant"] == 0.75  # 7th, 8ve, 4+, 9th
    octaves = voice_leading(_score({"Soprano": [72, 74], "Bass": [60, 62]}))
    assert octaves.parallels == 1
    contrary = voice_leading(_score({"Soprano": [67, 65], "Bass": [60, 62]}))
    assert contrary.pair_moves == 1 and contrary.parallels == 0


def test_ranges_sonorities_and_joins():
    score = _score({"Soprano": [81, 72, -1, 74], "Alto": [60, 60, 62, 62],
                    "Tenor": [55, 55, 55, 55], "Bass": [36, 48, 50, 50]})  # fmt: skip
    vl = voice_leading(score)
    assert (vl.notes, vl.out_of_range) == (15, 2)  # the Soprano's A5 and the Bass's C2
    assert (vl.places, vl.rests) == (16, 1)  # the Soprano rests at the third sonority
    times, pitch = sonorities(score)
    assert times.tolist() == [0, 480, 960, 1440] and pitch[0].tolist() == [81, 72, -1, 74]
    join = voice_leading(score, around=np.array([960]))
    assert join.moves == 2  # Alto 60 -> 62 and Bass 48 -> 50 (the Soprano rests)
    assert satb_tracks(score) == [0, 1, 2, 3] and satb_tracks(_score({"Soprano": [60]})) is None
