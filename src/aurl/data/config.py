"""The data section of a run config: which corpus, and how windows are cut and augmented."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from aurl.data.preprocess import PreprocessConfig


class ScheduleConfig(BaseModel):
    """How an augmentation's probability changes over training.

    ``constant``: the probability ``p`` at every step. ``ramp``: 0 before step ``start``,
    rising linearly to ``p`` at step ``end``, ``p`` from then on.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["constant", "ramp"] = "constant"
    start: int = Field(0, ge=0)
    end: int = Field(0, ge=0, validate_default=True)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: int, info: ValidationInfo) -> int:
        if info.data.get("kind") == "ramp" and end <= info.data.get("start", 0):
            raise ValueError(f"a ramp must end after it starts (start {info.data.get('start')})")
        return end


class TransposeAugment(BaseModel):
    """Random transposition of pitched notes; the range is ``data.transpose`` semitones."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(1.0, ge=0, le=1)
    schedule: ScheduleConfig = ScheduleConfig()


class TempoAugment(BaseModel):
    """Time-stretch: every Tempo token scaled by a factor, in whole log-spaced tempo bins."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.0, ge=0, le=1)
    min_factor: float = Field(0.8, gt=0, le=1)
    max_factor: float = Field(1.25, ge=1, le=10)
    schedule: ScheduleConfig = ScheduleConfig()


class VelocityAugment(BaseModel):
    """Every velocity multiplied by one factor drawn uniformly in the range, then clipped."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.0, ge=0, le=1)
    min_factor: float = Field(0.7, gt=0, le=1)
    max_factor: float = Field(1.3, ge=1, le=10)
    schedule: ScheduleConfig = ScheduleConfig()


class InstrumentAugment(BaseModel):
    """Each GM program replaced by another of its family of eight (one mapping per window)."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.0, ge=0, le=1)
    schedule: ScheduleConfig = ScheduleConfig()


class HumanizeAugment(BaseModel):
    """Timing and velocity jitter, and swing of off-beat eighths.

    Attributes:
        timing_steps: each position moves by up to this many grid steps either way.
        swing_steps: off-beat eighths move this many steps later (0: no swing).
        velocity_bins: each velocity moves by up to this many bins either way.
    """

    model_config = ConfigDict(extra="forbid")

    p: float = Field(0.0, ge=0, le=1)
    timing_steps: int = Field(1, ge=0, le=12)
    swing_steps: int = Field(0, ge=0, le=12)
    velocity_bins: int = Field(1, ge=0, le=32)
    schedule: ScheduleConfig = ScheduleConfig()


class AugmentConfig(BaseModel):
    """Augmentation of training windows, each with a probability, a range and a schedule.

    The defaults are transposition only, always on, as before augmentation was configurable.
    """

    model_config = ConfigDict(extra="forbid")

    transpose: TransposeAugment = TransposeAugment()
    tempo: TempoAugment = TempoAugment()
    velocity: VelocityAugment = VelocityAugment()
    instruments: InstrumentAugment = InstrumentAugment()
    humanize: HumanizeAugment = HumanizeAugment()


class InfillConfig(BaseModel):
    """With infilling tokens: the share of training windows made into infilling examples
    (see :mod:`aurl.tokens.infill`), the rest staying ordinary."""

    model_config = ConfigDict(extra="forbid")

    bars: float = Field(0.25, ge=0.0, le=1.0)  # fill 1..max_bars bars
    tracks: float = Field(0.25, ge=0.0, le=1.0)  # fill some tracks over a span of bars
    max_bars: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _shares(self):
        if self.bars + self.tracks > 1:
            raise ValueError(f"infill.bars {self.bars} + infill.tracks {self.tracks} is more "
                             "than 1 (they are shares of the training windows)")  # fmt: skip
        return self


class CurriculumConfig(BaseModel):
    """Sequence-length curriculum: windows of ``start_len`` tokens, doubling at each step in
    ``at_steps``, up to ``data.seq_len``. ``start_len: 0`` turns it off."""

    model_config = ConfigDict(extra="forbid")

    start_len: int = Field(0, ge=0)
    at_steps: list[int] = []

    @field_validator("at_steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)) or any(s < 0 for s in steps):
            raise ValueError(f"steps must be increasing and >= 0 (got {steps})")
        return steps


class SourceWeight(BaseModel):
    """One corpus of several, and how often its windows are drawn relative to the others."""

    model_config = ConfigDict(extra="forbid")

    source: str
    weight: float = Field(1.0, gt=0)


class DataConfig(BaseModel):
    """Which corpus, and how training windows are cut from it and augmented.

    ``source`` names one corpus ("bach" or a folder of MIDI files). ``sources``, when given,
    combines several with weights and takes precedence: its first entry is the corpus for
    validation and test, and ``source`` is set to it.
    """

    model_config = ConfigDict(extra="forbid")

    source: str = "bach"  # a named corpus ("bach", see `aurl prepare --list`) or a folder
    sources: list[SourceWeight] = []
    seq_len: int = Field(512, ge=8, le=65536)
    transpose: int = Field(6, ge=0, le=24)  # range of augment.transpose, semitones either way
    workers: int = Field(2, ge=1, le=256)  # processes for preparing
    loader_workers: int = Field(0, ge=0, le=64)  # DataLoader workers while training
    augment: AugmentConfig = AugmentConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    strict: bool = False  # skip files that need repair instead of repairing them
    # With control tokens: the chance that a training window leaves out each control type
    # (each on its own), so that a model learns to follow any subset of them.
    control_dropout: float = Field(0.5, ge=0.0, le=1.0)
    infill: InfillConfig = InfillConfig()

    @model_validator(mode="before")
    @classmethod
    def _source_follows_sources(cls, data):
        # ``sources`` takes precedence, so that presets naming one ``source`` can be
        # overridden with several; ``source`` then names the first.
        if not isinstance(data, dict) or not data.get("sources"):
            return data
        first = data["sources"][0]
        if isinstance(first, dict) and isinstance(first.get("source"), str):
            return {**data, "source": first["source"]}
        if isinstance(first, SourceWeight):
            return {**data, "source": first.source}
        return data

    @field_validator("curriculum")
    @classmethod
    def _curriculum_reaches_seq_len(cls, cur: CurriculumConfig, info: ValidationInfo):
        seq_len = info.data.get("seq_len")
        if cur.start_len and seq_len and cur.start_len * 2 ** len(cur.at_steps) < seq_len:
            raise ValueError(
                f"start_len {cur.start_len} doubled at {len(cur.at_steps)} steps never reaches "
                f"data.seq_len {seq_len}; add steps to curriculum.at_steps"
            )
        return cur

    def weighted_sources(self) -> list[SourceWeight]:
        """The training corpora with their weights (``source`` alone: weight 1)."""
        return list(self.sources) or [SourceWeight(source=self.source)]
