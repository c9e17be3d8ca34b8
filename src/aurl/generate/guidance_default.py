"""When generation is guided and steered by default (see :mod:`aurl.generate.guidance` and
:mod:`aurl.generate.steer`): what the CLI, the server and the studio share, torch-free so
that ``aurl --help`` stays quick.

New pieces asking for a key or bar controls are steered (strength 2) and not guided: in
``benchmarks/results/controls_steer.md`` steering alone followed every control as closely as
steering with guidance 2, at a lower cost to the music and in half the time. Infilling and
harmonizing are steered in their voice leading (strength 2: ``benchmarks/results/
infill_steer.md``), not towards their controls, so they are guided (scale 2) as well.
"""

from __future__ import annotations

ASKED = ("key", "density", "polyphony", "register", "chords")  # guided or steered by default
DEFAULT_GUIDANCE = 2.0  # benchmarks/results/controls_many_small.md
DEFAULT_STEER = 2.0  # benchmarks/results/controls_steer.md


def _asked(request) -> bool:
    return request is not None and any(getattr(request, k) is not None for k in ASKED)


def guidance_for(guidance: float | None, request, steer: float = 0.0) -> float:
    """The scale to sample a request with (a ``ControlRequest`` or None): ``guidance`` if
    given, else :data:`DEFAULT_GUIDANCE` where a key or a bar control is asked and the
    request is not steered (``steer`` 0), else 1."""
    if guidance is not None:
        return guidance
    return DEFAULT_GUIDANCE if _asked(request) and not steer else 1.0


def steer_for(steer: float | None, request, filling: bool = False) -> float:
    """The steering strength of a new piece (a ``ControlRequest`` or None): ``steer`` if
    given, else :data:`DEFAULT_STEER` where a key or a bar control is asked, else 0; when
    ``filling`` (infilling, harmonizing: their voice leading), :data:`DEFAULT_STEER`."""
    if steer is not None:
        return steer
    return DEFAULT_STEER if filling or _asked(request) else 0.0
