"""Controls by name, as a user gives them, checked and turned into a :class:`ControlPlan`.

Every bad value raises ValueError with one line that names the control and lists what it
accepts, so the CLI and the server can pass the message on as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aurl.generate.controls import ControlPlan
from aurl.midi.gm import FAMILY_NAMES, PROGRAM_NAMES
from aurl.tokens import TokenType, Vocabulary
from aurl.tokens.vocab import (
    CHORD_QUALITIES,
    DENSITY_EDGES,
    DRUM_PROGRAM,
    KEY_NAMES,
    POLYPHONY_EDGES,
    REGISTER_EDGES,
    VOICE_NAMES,
    tempo_bin,
)

T = TokenType
DEFAULT_STYLE = "bach"  # with no style asked, a model with controls writes chorales
ANY = "any"
_SATB = tuple((0, VOICE_NAMES.index(v)) for v in ("Soprano", "Alto", "Tenor", "Bass"))
ENSEMBLES: dict[str, tuple[tuple[int, int], ...]] = {
    "string quartet": ((40, -1), (40, -1), (41, -1), (42, -1)),
    "string trio": ((40, -1), (41, -1), (42, -1)),
    "piano trio": ((0, -1), (40, -1), (42, -1)),
    "wind quintet": ((73, -1), (68, -1), (71, -1), (60, -1), (70, -1)),
    "brass quartet": ((56, -1), (56, -1), (60, -1), (57, -1)),
    "satb": _SATB,
    "choir": _SATB,
    "chorale": _SATB,
}
_SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


@dataclass(frozen=True)
class ControlRequest:
    """Controls as names and numbers (None: not asked). See ``aurl generate --help``.

    Attributes:
        style: A style the model knows (``bach``, ``palestrina``...), or ``any``.
        key: ``D minor``, ``Eb major``, ``f#`` (lower case: minor).
        tempo: Beats per minute.
        time_signature: ``3/4``.
        instruments: Comma-separated GM program names or numbers, GM family names, or an
            ensemble (``string quartet``, ``satb``...).
        voices: A number of voices, sung (Soprano, Alto, Tenor, Bass, then more).
        density, polyphony, register: A bin, or bins per bar separated by commas or spaces
            (cycled over the bars).
        chords: One chord per bar, Roman numerals in the key (``i iv V i``) or chord symbols
            (``Dm G7 C``), cycled over the bars.
    """

    style: str | None = None
    key: str | None = None
    tempo: float | None = None
    time_signature: str | None = None
    instruments: str | None = None
    voices: int | None = None
    density: str | int | None = None
    polyphony: str | int | None = None
    register: str | int | None = None
    chords: str | None = None


def resolve_controls(request: ControlRequest, vocab: Vocabulary) -> ControlPlan:
    """The token values of a request, for a model speaking ``vocab``.

    Raises:
        ValueError: a value out of range or unknown, or a control the model cannot take.
    """
    r = request
    learned = {"style": None if r.style == ANY else r.style, "key": r.key, "density": r.density,
               "polyphony": r.polyphony, "register": r.register, "chords": r.chords}  # fmt: skip
    asked = [name for name, value in learned.items() if value not in (None, "")]
    if asked and not vocab.has_controls:
        raise ValueError(f"this model was trained without controls, so it cannot take "
                         f"{', '.join(asked)}; train with tokenizer.controls=true")  # fmt: skip
    if (r.instruments or r.voices) and not vocab.has_tracks:
        raise ValueError("this model was trained without tracks, so it cannot take "
                         "instruments or voices; train with tokenizer.tracks=16")  # fmt: skip
    key = parse_key(r.key) if r.key else -1
    bars = {}
    for kind, value, edges in ((T.DENSITY, r.density, DENSITY_EDGES),
                               (T.POLYPHONY, r.polyphony, POLYPHONY_EDGES),
                               (T.REGISTER, r.register, REGISTER_EDGES)):  # fmt: skip
        if value not in (None, ""):
            bars[kind] = parse_bins(kind.name.lower(), value, len(edges) + 1)
    if r.chords:
        bars[T.CHORD] = parse_chords(r.chords, key if key >= 0 else 0)
    return ControlPlan(
        style=parse_style(r.style, vocab),
        key=key,
        tracks=parse_tracks(r.instruments, r.voices, vocab),
        tempo=parse_tempo(r.tempo, vocab),
        time_signature=parse_time_signature(r.time_signature, vocab),
        bars=bars,
    )


def parse_style(style: str | None, vocab: Vocabulary) -> int:
    if not vocab.has_controls or style == ANY:
        return -1
    styles = vocab.config.styles
    name = DEFAULT_STYLE if style is None else style.strip().lower()
    if name not in styles:
        if style is None:
            return -1
        raise ValueError(f"style {style!r} is not one this model knows; choose from "
                         f"{', '.join(styles)} or {ANY}")  # fmt: skip
    return styles.index(name)


def parse_key(key: str) -> int:
    """``D minor``, ``d``, ``Eb major``, ``F#`` -> 0-11 major, 12-23 minor."""
    m = re.fullmatch(r"\s*([A-Ga-g])\s*([#b]?)\s*(major|minor|maj|min|m)?\s*", key)
    if not m:
        raise ValueError(f"key {key!r}: give a tonic and a mode, like {KEY_NAMES[2 + 12]!r} or "
                         "'Eb major' (a lower-case tonic alone is minor)")  # fmt: skip
    letter, accidental, mode = m.groups()
    tonic = (_SEMITONE[letter.lower()] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    minor = mode in ("minor", "min", "m") or (mode is None and letter.islower())
    return tonic + 12 * minor


def parse_bins(name: str, value: str | int, count: int) -> tuple[int, ...]:
    """A bin or a list of bins, each in 0..count-1."""
    parts = [value] if isinstance(value, int) else re.split(r"[,\s]+", str(value).strip())
    out = []
    for part in parts:
        try:
            b = int(part)
        except ValueError:
            b = -1
        if not 0 <= b < count:
            raise ValueError(f"{name} {part!r}: give bins from 0 to {count - 1}, one for all bars "
                             "or one per bar separated by commas")  # fmt: skip
        out.append(b)
    return tuple(out)


def parse_chords(chords: str, key: int) -> tuple[int, ...]:
    """Chord values (quality * 12 + root), one per bar: Roman numerals read in ``key``,
    or chord symbols."""
    from music21 import harmony, roman
    from music21 import key as m21key

    from aurl.analysis.baseline import quality_of

    tonic = KEY_NAMES[key].split()[0]
    k = m21key.Key(tonic.lower() if key >= 12 else tonic)
    out = []
    for figure in chords.replace(",", " ").split():
        try:
            if figure[0] in "ABCDEFG":  # music21 spells a flat root with "-"
                flat = len(figure) > 1 and figure[1] == "b"
                chord = harmony.ChordSymbol(figure[0] + "-" + figure[2:] if flat else figure)
            else:
                chord = roman.RomanNumeral(figure, k)
            root = chord.root().pitchClass
            quality = quality_of({p.pitchClass for p in chord.pitches}, root)
        except Exception:  # music21 raises many kinds for a figure it cannot read
            quality = "other"
        if quality not in CHORD_QUALITIES:
            raise ValueError(f"chord {figure!r}: give Roman numerals in the key (i iv V7 i) or "
                             f"chord symbols (Dm G7 C) of the qualities "
                             f"{', '.join(CHORD_QUALITIES)}")  # fmt: skip
        out.append(CHORD_QUALITIES.index(quality) * 12 + root)
    if not out:
        raise ValueError("chords: give at least one chord, like 'i iv V i'")
    return tuple(out)


def parse_tracks(instruments: str | None, voices: int | None, vocab: Vocabulary
                 ) -> tuple[tuple[int, int], ...]:  # fmt: skip
    """The ``(program, voice)`` of every track to declare."""
    if voices is not None:
        if instruments:
            raise ValueError("give instruments or voices, not both")
        if not 1 <= voices <= min(len(VOICE_NAMES) - 1, vocab.config.tracks):
            raise ValueError(f"voices {voices}: give 1 to {min(6, vocab.config.tracks)}")
        order = ("Soprano", "Alto", "Tenor", "Bass", "Quinto", "Sesto")
        picks = {1: ("Soprano",), 2: ("Soprano", "Bass"), 3: ("Soprano", "Alto", "Bass")}
        names = picks.get(voices, order[:voices])
        return tuple((0, VOICE_NAMES.index(n)) for n in names)
    if not instruments:
        return ()
    text = instruments.strip().lower()
    if text in ENSEMBLES:
        tracks = ENSEMBLES[text]
    else:
        tracks = tuple((_program(part.strip()), -1) for part in text.split(",") if part.strip())
    if len(tracks) > vocab.config.tracks:
        raise ValueError(f"instruments: {len(tracks)} tracks, more than this model's "
                         f"{vocab.config.tracks}")  # fmt: skip
    return tracks


def _program(name: str) -> int:
    if name.isdigit() and 0 <= int(name) < 128:
        return int(name)
    if name in ("drums", "drum kit", "percussion"):
        return DRUM_PROGRAM
    lower = [p.lower() for p in PROGRAM_NAMES]
    if name in lower:
        return lower.index(name)
    if name in FAMILY_NAMES:
        return FAMILY_NAMES.index(name) * 8
    starts = [i for i, p in enumerate(lower) if p.startswith(name)]
    if starts:
        return starts[0]
    raise ValueError(f"instrument {name!r}: give GM program names or numbers 0-127 (violin, "
                     f"cello, flute...), drums, GM families ({', '.join(FAMILY_NAMES)}) or an "
                     f"ensemble ({', '.join(ENSEMBLES)})")  # fmt: skip


def parse_tempo(tempo: float | None, vocab: Vocabulary) -> int:
    if tempo is None:
        return -1
    cfg = vocab.config
    if not cfg.tempo_min <= tempo <= cfg.tempo_max:
        raise ValueError(f"tempo {tempo:g}: give beats per minute from {cfg.tempo_min:g} to "
                         f"{cfg.tempo_max:g}")  # fmt: skip
    return int(tempo_bin(tempo, vocab))


def parse_time_signature(sig: str | None, vocab: Vocabulary) -> int:
    if sig is None:
        return -1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", sig)
    pair = (int(m.group(1)), int(m.group(2))) if m else None
    if pair not in vocab.signature_index:
        allowed = ", ".join(f"{n}/{d}" for n, d in vocab.time_signatures)
        raise ValueError(f"time signature {sig!r}: choose from {allowed}")
    return vocab.signature_index[pair]


def control_choices(vocab: Vocabulary) -> dict:
    """What each control accepts for a model speaking ``vocab`` (for a server's /info)."""
    if not vocab.has_controls and not vocab.has_tracks:
        return {"tempo": [vocab.config.tempo_min, vocab.config.tempo_max],
                "time_signature": [f"{n}/{d}" for n, d in vocab.time_signatures]}  # fmt: skip
    choices = {
        "style": [*vocab.config.styles, ANY] if vocab.has_controls else [],
        "key": list(KEY_NAMES),
        "tempo": [vocab.config.tempo_min, vocab.config.tempo_max],
        "time_signature": [f"{n}/{d}" for n, d in vocab.time_signatures],
        "instruments": {
            "programs": list(PROGRAM_NAMES),
            "families": list(FAMILY_NAMES),
            "ensembles": list(ENSEMBLES),
            "drums": ["drums"],
        },  # fmt: skip
        "voices": [1, min(len(VOICE_NAMES) - 1, vocab.config.tracks)],
        "density": [0, len(DENSITY_EDGES)],
        "polyphony": [0, len(POLYPHONY_EDGES)],
        "register": [0, len(REGISTER_EDGES)],
        "chords": {
            "qualities": list(CHORD_QUALITIES),
            "examples": ["i iv V i", "Dm G7 C"],
        },  # fmt: skip
    }
    if not vocab.has_controls:
        for name in ("style", "key", "density", "polyphony", "register", "chords"):
            choices.pop(name)
    return choices
