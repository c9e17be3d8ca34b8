"""The tokenizer's configuration: the time grid and the value ranges of every token type."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_TIME_SIGNATURES = (
    "2/4", "3/4", "4/4", "5/4", "6/4", "7/4", "2/2", "3/2", "4/2",
    "3/8", "5/8", "6/8", "7/8", "9/8", "12/8",
)  # fmt: skip
# The corpora that ship with music21 (aurl.data.corpora), and "other" for anything else.
DEFAULT_STYLES = ("bach", "palestrina", "quartets", "monteverdi", "essen", "ryans-mammoth",
                  "oneills", "airds-airs", "other")  # fmt: skip


class TokenizerConfig(BaseModel):
    """What the vocabulary holds. Saved with every dataset and every model.

    Attributes:
        steps_per_quarter: grid steps per quarter note (12 holds 16ths and 8th triplets).
        time_signatures: the time signatures that have a token, as "N/D" strings.
        velocity_bins: number of velocity tokens, evenly spaced over 1..127.
        max_duration_quarters: longest note duration, in quarters (one token per grid step).
        tempo_bins: number of tempo tokens, log-spaced over [tempo_min, tempo_max] (BPM).
        reserved_tokens: special ids kept free for infilling and control tokens.
        microtiming: 0 or 1 quantizes strictly to the grid. N >= 2 keeps each note's offset
            from its grid step, in 1/N of a step, as a MicroTiming token that decode
            restores (groove-preserving quantization: swing and rubato survive).
        tracks: 0 keeps one stream of notes, each naming its program (tracks of one program
            merge). N >= 1 keeps up to N tracks per piece: the piece declares them after BOS
            (``Track_k Program_p [Voice_v]``, k counting up from 0) and every note names its
            track instead of its program (see :mod:`aurl.tokens.tracks`).
        controls: adds the control tokens (style and key of a piece; density, polyphony,
            register and chord of each bar), all optional (see :mod:`aurl.tokens.controls`).
        styles: the style names a Style token can take (with controls).
        infill: adds Fill and Infill, the layout that fills bars or tracks with both sides
            in view (see :mod:`aurl.tokens.infill`).
        infill_context: with infill, how many bars before the first marked bar the second
            pass writes again, whole, before the marked bars: the notes that lead into a gap
            then lie just before it. Shapes training examples and prompts, not the vocabulary.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps_per_quarter: int = Field(12, ge=1, le=96)
    time_signatures: tuple[str, ...] = DEFAULT_TIME_SIGNATURES
    velocity_bins: int = Field(32, ge=1, le=127)
    max_duration_quarters: int = Field(16, ge=1, le=64)
    tempo_bins: int = Field(32, ge=2, le=256)
    tempo_min: float = Field(30.0, gt=0)
    tempo_max: float = Field(240.0, gt=0)
    reserved_tokens: int = Field(13, ge=0, le=256)
    microtiming: int = Field(0, ge=0, le=32)
    tracks: int = Field(0, ge=0, le=64)
    controls: bool = False
    styles: tuple[str, ...] = DEFAULT_STYLES
    infill: bool = False
    infill_context: int = Field(0, ge=0, le=4)

    @field_validator("time_signatures")
    @classmethod
    def _check_time_signatures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one time signature")
        for ts in value:
            num, _, den = ts.partition("/")
            if not (num.isdigit() and den.isdigit()) or int(num) < 1:
                raise ValueError(f"{ts!r} is not a time signature like '4/4'")
            if int(den) not in (1, 2, 4, 8, 16):
                raise ValueError(f"{ts!r}: denominator must be one of 1, 2, 4, 8, 16")
        return tuple(value)

    @property
    def micro(self) -> int:
        """Sub-steps per grid step: 1 when quantizing strictly."""
        return max(1, self.microtiming)

    def bar_steps(self, numerator: int, denominator: int) -> int:
        """Length of a bar in grid steps; raises ValueError if it is not a whole number."""
        steps = numerator * 4 * self.steps_per_quarter / denominator
        if steps != int(steps):
            raise ValueError(
                f"time signature {numerator}/{denominator} does not fit a grid of "
                f"{self.steps_per_quarter} steps per quarter"
            )
        return int(steps)
