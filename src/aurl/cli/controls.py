"""The control options of ``aurl generate`` (and of the commands that take controls)."""

from __future__ import annotations

import click

from aurl.generate.guidance_default import DEFAULT_GUIDANCE, DEFAULT_STEER

_OPTIONS = (
    ("--style", str, "Style: a corpus the model learned (bach, palestrina, monteverdi, quartets, "
                     "essen...) or 'any' to let it choose. Default: bach."),
    ("--key", str, "Key, like 'D minor', 'Eb major' or 'f#' (lower case: minor)."),
    ("--tempo", click.FloatRange(1, 1000), "Tempo in beats per minute (held exactly)."),
    ("--time-signature", str, "Time signature of every bar, like 3/4 (held exactly)."),
    ("--instruments", str, "Instruments (held exactly): GM names or numbers separated by commas, "
                           "GM families, or an ensemble: 'string quartet', 'satb'..."),
    ("--voices", click.IntRange(1, 6), "Number of sung voices, Soprano down to Bass (held "
                                       "exactly)."),
    ("--density", str, "Notes starting per quarter note, as a bin 0-7 (0: under 0.5, 7: 6 and more), "
                       "one for all bars or one per bar: '2,2,3,5'."),
    ("--polyphony", str, "Notes struck together, as a bin 0-5 (0: one, 5: six and more), one "
                         "for all bars or one per bar."),
    ("--register", str, "Mean pitch, as a bin 0-7 (0: below C3, 3: around middle C, 7: above "
                        "F#5), one for all bars or one per bar."),
    ("--chords", str, "One chord per bar, cycled: Roman numerals in the key ('i iv V i') or "
                      "chord symbols ('Dm G7 C')."),
)  # fmt: skip


guidance_option = click.option(
    "--guidance", type=click.FloatRange(0, 20, min_open=True), default=None,
    help="Classifier-free guidance of the controls: above 1 follows them more closely (each "
         "step is computed twice, up to twice the time); 1 is the plain model. Default: "
         f"{DEFAULT_GUIDANCE:g} when --key, --density, --polyphony, --register or --chords is "
         "given and the piece is not steered (--steer 0, or infill and harmonize), else 1.")  # fmt: skip


steer_option = click.option(
    "--steer", type=click.FloatRange(0, 100), default=None,
    help="Steering: a new piece towards the chords, key and bar bins asked (pitches outside "
         "the bar's chord or the key lose 2x this many nats; notes are pushed towards each "
         "bar's density, polyphony and register), infilled bars and harmonies towards smooth "
         "voice leading (voice ranges, no leaps past a fifth, no parallel fifths or octaves, "
         "no crossings or clashes, every voice sounding); "
         f"0 leaves the model alone. Default: {DEFAULT_STEER:g} (for generate, only when "
         "--key, --chords or a bar bin is given, else 0).")  # fmt: skip


LEARNED = ("--style", "--key", "--density", "--polyphony", "--register", "--chords")


def control_options(command=None, *, only: tuple[str, ...] = ()):
    """Add the control options (or ``only`` those named) to a click command; they arrive as
    keyword arguments. Use bare (``@control_options``) or called (``@control_options(only=...)``)."""

    def add(command):
        for name, kind, text in reversed(_OPTIONS):
            if not only or name in only:
                command = click.option(name, type=kind, default=None, help=text)(command)
        return command

    return add(command) if command is not None else add


def control_request(values: dict):
    """The :class:`~aurl.generate.control_names.ControlRequest` of the control options given
    (None when none was)."""
    from aurl.generate.control_names import ControlRequest

    fields = {k: v for k, v in values.items() if v is not None}
    return ControlRequest(**fields) if fields else None
