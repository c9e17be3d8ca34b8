"""Expert Roman-numeral analyses shipped with music21, aligned with their scores.

Three sets from music21's corpus: its 20 Bach chorale analyses, split by name into a tuning
half (odd Riemenschneider numbers) and a held-out half (even numbers), and its 48 Monteverdi
madrigal analyses, held out; and, from a folder of further analyses beside their scores
(``<collection>/<number>/analysis.txt`` and ``score.mxl``, see ``benchmarks/analyses``), one
set per collection named in ``COLLECTIONS`` (two tune, the others are held out). Each
analysis is aligned with its score by measure number and beat: the score is parsed with
music21 as written (chord symbols removed, repeats not expanded, pickup bars kept as bar 0,
meter changes followed bar by bar), so ``m4 b3`` in the analysis and in the score are the same
moment. The compared moments are every beat of the score plus every chord change the analysis
places between beats (half beats), less those where every voice rests; the reference chord at
each is the last one the analysis states at or before it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aurl.analysis.baseline import Labels, key_index, music21_labels, quality_of
from aurl.analysis.chords import QUALITIES
from aurl.analysis.chroma import chroma, overlaps
from aurl.analysis.piece import STEPS_PER_QUARTER, Piece

MIN_ALIGNED = 0.85  # below this share of sounding reference roots, the versions differ
COLLECTIONS = {
    "dichterliebe": "Schumann Dichterliebe, tuning",
    "wtc1-preludes": "Bach WTC I preludes, held out",
    "winterreise": "Schubert Winterreise, held out",
    "goudimel": "Goudimel psalms, tuning",
}
SETS = (
    "chorales, tuning half",
    "chorales, held-out half",
    "Monteverdi madrigals, held out",
    *COLLECTIONS.values(),
)
_SCORE_SUFFIXES = (".mxl", ".musicxml", ".xml", ".krn")
_INTERVALS = {name: intervals for name, intervals, _ in QUALITIES}


@dataclass(frozen=True)
class Reference:
    """One piece and its expert analysis, aligned moment by moment.

    Attributes:
        name: ``bwv269``, ``madrigal.3.1`` and so on.
        set: The set the piece belongs to (one of ``SETS``).
        piece: The score's notes and bars, as written.
        beats: Every compared moment (steps): beat starts and off-beat chord changes.
        root: Reference root pitch class at each moment.
        quality: Reference quality name at each moment (``"other"`` outside our set).
        key: Reference local key index at each moment.
        figure: Reference Roman numeral at each moment, as the analyst wrote it.
        global_key: Key index of the analysis's first key.
        baseline: music21's ``chordify()`` reading at the same moments (see
            :mod:`aurl.analysis.baseline`).
        transposition: Semitones the reference was moved to match the score (some analyses
            describe a transposed edition).
        aligned: Share of moments whose reference root sounds in the score; low values mean
            the analysis describes another version of the piece (see :func:`load_reference`).
    """

    name: str
    set: str
    piece: Piece
    beats: np.ndarray
    root: np.ndarray
    quality: list[str]
    key: np.ndarray
    figure: list[str]
    global_key: int
    baseline: Labels
    transposition: int = 0
    aligned: float = 1.0


def analysis_files(folder: Path | None = None) -> list[Path]:
    """Every analysis of music21's corpus (chorales first, then madrigals), then those of
    ``folder``'s collections (``<collection>/<number>/analysis.txt``) if given."""
    import music21

    corpus = Path(music21.__file__).parent / "corpus"
    chorales = sorted((corpus / "bach" / "choraleAnalyses").glob("*.rntxt"))
    files = chorales + sorted((corpus / "monteverdi").glob("*.rntxt"), key=_natural)
    if folder is not None:
        extra = sorted(folder.glob("*/*/analysis.txt"))
        files += [p for p in extra if p.parent.parent.name in COLLECTIONS]
    return files


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def set_of(rntxt: Path) -> str:
    """The set of an analysis, fixed by its file name: odd-numbered chorales tune, the rest
    are held out; an analysis of the folder belongs to its collection's set."""
    if rntxt.name == "analysis.txt":
        return COLLECTIONS[rntxt.parent.parent.name]
    number = re.fullmatch(r"riemenschneider(\d+)", rntxt.stem)
    if number is None:
        return SETS[2]
    return SETS[0] if int(number.group(1)) % 2 else SETS[1]


def score_name(rntxt: Path) -> str:
    """The corpus name of the score an analysis describes (``248(2).12`` -> ``bwv248.12-2``)."""
    match = re.search(r"^BWV:\s*(\S+)", rntxt.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise ValueError(f"{rntxt.name}: no BWV line in the header")
    bwv = match.group(1).rstrip("abcdefghijklmnopqrstuvwxyz")
    part = re.fullmatch(r"(\d+)\((\d+)\)\.(\d+)", bwv)
    if part:
        bwv = f"{part.group(1)}.{part.group(3)}-{part.group(2)}"
    return f"bwv{bwv}"


def score_of(rntxt: Path) -> tuple[str, object]:
    """The name of the piece an analysis describes and its score, chord symbols removed.

    The score is ``score.mxl`` beside an ``analysis.txt`` (named ``<collection>.<number>``),
    the file beside the analysis with the same name (the madrigals), else the corpus score its
    ``BWV`` header names (the chorales).
    """
    from music21 import converter, corpus, harmony

    if rntxt.name == "analysis.txt":
        beside = [rntxt.with_name("score.mxl")]
        rntxt = rntxt.with_name(f"{rntxt.parent.parent.name}.{rntxt.parent.name}")
    else:
        beside = [rntxt.with_suffix(s) for s in _SCORE_SUFFIXES if rntxt.with_suffix(s).exists()]
    if beside:
        name, score = rntxt.name.removesuffix(".rntxt"), converter.parse(str(beside[0]))
    else:
        name = score_name(rntxt)
        score = corpus.parse(f"bach/{name}")
    for symbol in list(score.recurse().getElementsByClass(harmony.Harmony)):
        symbol.activeSite.remove(symbol)
    return name, score


def piece_from_music21(score, name: str, spq: int = STEPS_PER_QUARTER) -> tuple[Piece, dict]:
    """A Piece from a music21 score as written, and ``{measure number: start}`` in steps.

    Bars start where the score's measures start; a pickup measure starts before 0.
    """
    flat = score.stripTies().flatten()
    time, dur, pitch = [], [], []
    for n in flat.notes:
        for p in n.pitches:
            time.append(round(float(n.offset) * spq))
            dur.append(max(1, round(float(n.quarterLength) * spq)))
            pitch.append(p.midi)
    measures = {}
    starts, beats = [], []
    ts = None
    for m in score.parts[0].getElementsByClass("Measure"):
        ts = m.timeSignature or ts or m.getContextByClass("TimeSignature")
        start = round((float(m.offset) - float(m.paddingLeft)) * spq)
        beat = round(float(ts.beatDuration.quarterLength) * spq) if ts else spq
        measures.setdefault(m.number, start)
        if not starts or start > starts[-1]:
            starts.append(start)
            beats.append(beat)
    t, d, p = (np.asarray(x, np.int64) for x in (time, dur, pitch))
    order = np.lexsort((p, t))
    first_number = min(measures) if measures else 1
    piece = Piece(
        name,
        t[order],
        d[order],
        p[order],
        np.full(len(t), 80, np.int64),
        spq,
        np.asarray(starts, np.int64),
        np.asarray(beats, np.int64),
        first_number,
    )
    return piece, measures


def load_reference(rntxt: Path) -> Reference:
    """Parse one analysis and its score with music21 and align them moment by moment."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = converter.parse(str(rntxt), format="romanText")
        name, score = score_of(rntxt)
        piece, measures = piece_from_music21(score, name)
        renumber = _pickup_shift(analysis, score, measures)
        events = _events(analysis, {n - renumber: t for n, t in measures.items()},
                         piece.steps_per_quarter)  # fmt: skip
        times = np.array([e[0] for e in events], np.int64)
        beats = piece.beat_starts()
        beats = np.union1d(beats[beats >= times[0]], times[times < piece.end])
        sounding = _sounding(piece, beats)
        keep = sounding.any(1)  # a moment where every voice rests has no harmony to read
        beats, sounding = beats[keep], sounding[keep]
        baseline = music21_labels(score, beats, piece.steps_per_quarter)
    idx = np.searchsorted(times, beats, side="right") - 1
    root = np.array([events[i][1] for i in idx], np.int64)
    key = np.array([events[i][3] for i in idx], np.int64)
    quality = [events[i][2] for i in idx]
    shift, aligned = _transposition(sounding, root, quality)
    return Reference(
        name=name,
        set=set_of(rntxt),
        piece=piece,
        beats=beats,
        root=(root + shift) % 12,
        quality=quality,
        key=(key + shift) % 12 + 12 * (key >= 12),
        figure=[events[i][4] for i in idx],
        global_key=(events[0][3] + shift) % 12 + 12 * (events[0][3] >= 12),
        baseline=baseline,
        transposition=shift,
        aligned=aligned,
    )


def _pickup_shift(analysis, score, measures: dict) -> int:
    """1 where the analysis numbers the pickup bar 0 and the score numbers it 1 (a short
    first measure), else 0: the score's measure ``n + shift`` is the analysis's bar ``n``."""
    from music21 import roman

    numbers = {rn.measureNumber for rn in analysis.recurse().getElementsByClass(roman.RomanNumeral)}
    if 0 not in numbers or 0 in measures or 1 not in measures:
        return 0
    first = score.parts[0].getElementsByClass("Measure").first()
    ts = first.timeSignature or first.getContextByClass("TimeSignature")
    short = ts is not None and first.duration.quarterLength < ts.barDuration.quarterLength
    return int(short)


def _events(analysis, measures: dict, spq: int) -> list[tuple[int, int, str, int, str]]:
    """``(time, root, quality, key, figure)`` of every numeral in bars the score has, by time.

    A numeral's time is its bar's start in the score plus its beat, counted in the analysis's
    own beat unit (so a 4/4 analysis of a 2/2 score still lands on the right quarter).
    """
    from music21 import roman

    events = []
    for rn in analysis.recurse().getElementsByClass(roman.RomanNumeral):
        if rn.measureNumber not in measures or not rn.pitches:
            continue  # a bar the score lacks, or a figure music21 cannot spell
        start = measures[rn.measureNumber]
        offset = (float(rn.beat) - 1) * float(rn.beatDuration.quarterLength)
        root = rn.root().pitchClass
        events.append(
            (
                start + round(offset * spq),
                root,
                quality_of(set(rn.pitchClasses), root),
                key_index(rn.key),
                rn.figure,
            )
        )
    return sorted(events, key=lambda e: e[0])


def _sounding(piece: Piece, beats: np.ndarray) -> np.ndarray:
    """``(len(beats), 12)``: which pitch classes sound from each moment to the next."""
    return chroma(piece, overlaps(piece, np.append(beats, max(piece.end, beats[-1] + 1)))) > 0


def _transposition(sounding: np.ndarray, root: np.ndarray, quality: list[str]) -> tuple[int, float]:
    """The shift of the reference chords that makes their tones sound most often in the score.

    Every tone of the reference chord counts, not the root alone: a chord's fifth sounds
    about as often as its root, so roots alone cannot tell a transposition by a fifth from
    none.

    Args:
        sounding: See :func:`_sounding`, at moments where something sounds.
        root: Reference root at each moment.
        quality: Reference quality at each moment.

    Returns:
        ``(semitones, share of moments whose shifted root sounds)``.
    """
    if not len(root):
        return 0, 0.0
    tones = np.zeros(sounding.shape, bool)  # reference chord tones, per moment
    for i, q in enumerate(quality):
        tones[i, (root[i] + np.array(_INTERVALS.get(q, (0,)))) % 12] = True
    heard = [(sounding & np.roll(tones, s, axis=1)).sum() for s in range(12)]
    best = int(np.argmax(heard))
    rows = np.arange(len(root))
    return best, round(float(sounding[rows, (root + best) % 12].mean()), 4)


def load_references(
    sets: tuple[str, ...] = SETS,
    names: tuple[str, ...] | None = None,
    folder: Path | None = None,
) -> list[Reference]:
    """The analyses of the given sets (optionally only the given pieces), aligned.

    Args:
        sets: Names from ``SETS``.
        names: Piece names to keep (``riemenschneider001``, ``madrigal.3.1``,
            ``winterreise.01``), or None for all.
        folder: The folder of further analyses (see :func:`analysis_files`); without it
            the folder's sets are empty.

    Loading parses every score with music21 and chordifies it: about half a second per
    chorale and three seconds per madrigal.
    """
    paths = [p for p in analysis_files(folder) if set_of(p) in sets]
    return [load_reference(p) for p in paths if names is None or _piece_name(p) in names]


def _piece_name(path: Path) -> str:
    if path.name == "analysis.txt":
        return f"{path.parent.parent.name}.{path.parent.name}"
    return path.stem
