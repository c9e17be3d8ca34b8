"""When generation is guided by default (see :mod:`aurl.generate.guidance`): what the CLI,
the server and the studio share, torch-free so that ``aurl --help`` stays quick."""

from __future__ import annotations

GUIDED = ("key", "density", "polyphony", "register", "chords")  # guided by default
DEFAULT_GUIDANCE = 2.0  # benchmarks/results/controls_many_small.md


def guidance_for(guidance: float | None, request) -> float:
    """The scale to sample a request with (a ``ControlRequest`` or None): ``guidance`` if
    given, else :data:`DEFAULT_GUIDANCE` where a key or a bar control is asked, else 1."""
    if guidance is not None:
        return guidance
    asked = request is not None and any(getattr(request, k) is not None for k in GUIDED)
    return DEFAULT_GUIDANCE if asked else 1.0
