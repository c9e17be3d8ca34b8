"""Roman numerals: a chord (root, quality, inversion) named in a key.

Degrees follow the key's scale (harmonic minor for the dominant and leading tone); chromatic
roots get a flat or sharp (``bII``, ``bVII``, ``#iv``). A major or dominant-seventh chord, or a
diminished chord, that is not in the key but leads to a degree of it is named as a secondary
chord (``V/V``, ``V7/IV``, ``viio7/ii``). Figures follow the usual figured-bass shorthand
(``6``, ``64``, ``7``, ``65``, ``43``, ``42``).
"""

from __future__ import annotations

UPPER = ("maj", "aug", "dom7", "maj7", "sus4")
_NUMERALS = ("I", "II", "III", "IV", "V", "VI", "VII")
_SUFFIX = {"dim": "o", "dim7": "o", "hdim7": "ø", "aug": "+"}
_SEVENTHS = ("dom7", "maj7", "min7", "hdim7", "dim7")
_TRIAD_FIGURES = ("", "6", "64")
_SEVENTH_FIGURES = ("7", "65", "43", "42")

# Semitones above the tonic -> (degree 0-6, accidental) for each mode.
_DEGREES = {
    "major": {0: (0, ""), 1: (1, "b"), 2: (1, ""), 3: (2, "b"), 4: (2, ""), 5: (3, ""),
              6: (3, "#"), 7: (4, ""), 8: (5, "b"), 9: (5, ""), 10: (6, "b"), 11: (6, "")},
    "minor": {0: (0, ""), 1: (1, "b"), 2: (1, ""), 3: (2, ""), 4: (2, "#"), 5: (3, ""),
              6: (3, "#"), 7: (4, ""), 8: (5, ""), 9: (5, "#"), 10: (6, ""), 11: (6, "#")},
}  # fmt: skip
# Secondary targets: degrees that can be tonicized (major or minor triads in the key).
_TARGETS = {
    "major": {2: "ii", 4: "iii", 5: "IV", 7: "V", 9: "vi"},
    "minor": {3: "III", 5: "iv", 7: "V", 8: "VI", 10: "VII"},
}
_DIATONIC_ANY = {
    "major": {(0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"), (11, "dim"),
              (0, "maj7"), (2, "min7"), (4, "min7"), (5, "maj7"), (7, "dom7"), (9, "min7"),
              (11, "hdim7"), (11, "dim7")},
    "minor": {(0, "min"), (2, "dim"), (3, "maj"), (5, "min"), (7, "maj"), (8, "maj"), (10, "maj"),
              (11, "dim"), (0, "min7"), (2, "hdim7"), (3, "maj7"), (5, "min7"), (7, "dom7"),
              (8, "maj7"), (10, "dom7"), (11, "dim7")},
}  # fmt: skip


def figure(quality: str, inversion: int) -> str:
    """Figured-bass suffix of a chord in an inversion (-1 or 0 give root position)."""
    figures = _SEVENTH_FIGURES if quality in _SEVENTHS else _TRIAD_FIGURES
    return figures[inversion] if 0 <= inversion < len(figures) else figures[0]


def _plain(root: int, quality: str, inversion: int, tonic: int, mode: str) -> str:
    interval = (root - tonic) % 12
    degree, accidental = _DEGREES[mode][interval]
    numeral = _NUMERALS[degree]
    numeral = numeral if quality in UPPER else numeral.lower()
    return accidental + numeral + _SUFFIX.get(quality, "") + figure(quality, inversion)


def roman_numeral(root: int, quality: str, inversion: int, tonic: int, mode: str) -> str:
    """Roman numeral of a chord in a key, e.g. ``"V65"``, ``"viio7/V"``, ``"bVI"``.

    Args:
        root: Root pitch class.
        quality: Quality name (see :data:`aurl.analysis.chords.QUALITY_NAMES`).
        inversion: 0 root position, 1 first, 2 second, 3 third; -1 when unknown.
        tonic: Tonic pitch class of the key.
        mode: ``"major"`` or ``"minor"``.

    Returns:
        The numeral; ``"N"`` when ``root`` is negative.
    """
    if root < 0:
        return "N"
    interval = (root - tonic) % 12
    if (interval, quality) not in _DIATONIC_ANY[mode]:
        secondary = _secondary(interval, quality, inversion, mode)
        if secondary:
            return secondary
    return _plain(root, quality, inversion, tonic, mode)


def _secondary(interval: int, quality: str, inversion: int, mode: str) -> str | None:
    """``V/x`` or ``viio/x`` when the chord is a dominant of a diatonic degree."""
    if quality in ("maj", "dom7"):
        target = (interval - 7) % 12
        kind = "V"
    elif quality in ("dim", "dim7", "hdim7"):
        target = (interval + 1) % 12
        kind = "vii" + _SUFFIX[quality]
    else:
        return None
    if target not in _TARGETS[mode]:
        return None
    base = kind + figure(quality, inversion)
    return f"{base}/{_TARGETS[mode][target]}"


def scale_degree(root: int, tonic: int) -> int:
    """Semitones of a root above the tonic (0-11)."""
    return (root - tonic) % 12
