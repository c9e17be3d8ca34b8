"""Request and response bodies of the HTTP API (pydantic: every field typed and bounded).

Bounds that depend on the server (bars, num, upload size) are checked by the app against its
:class:`~aurl.serve.limits.Limits`; the ones here hold for every server.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from aurl.generate.control_names import ControlRequest

_MODEL = Field(None, description="A model name from /info (default: the server's).",
               max_length=100)  # fmt: skip


class Controls(BaseModel):
    """The controls of ``aurl generate`` (each optional; see /info for allowed values)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    style: str | None = Field(None, max_length=64)
    key: str | None = Field(None, max_length=32)
    tempo: float | None = Field(None, ge=1, le=1000)
    time_signature: str | None = Field(None, max_length=16)
    instruments: str | None = Field(None, max_length=512)
    voices: int | None = Field(None, ge=1, le=6)
    density: str | int | None = Field(None)
    polyphony: str | int | None = Field(None)
    mean_register: str | int | None = Field(None, alias="register")  # pydantic owns "register"
    chords: str | None = Field(None, max_length=2048)

    def request(self) -> ControlRequest | None:
        """The :class:`ControlRequest` of the controls given (None when none was)."""
        given = self.model_dump(by_alias=True, exclude_none=True)
        return ControlRequest(**given) if given else None


class Sampling(BaseModel):
    """How each next token is picked (and whether pieces come back with their notes)."""

    model_config = ConfigDict(extra="forbid")

    with_notes: bool = Field(False, description="Add every note and the bar lines (a roll).")

    seed: int | None = Field(None, ge=0, lt=2**31, description="Same seed, same music.")
    temperature: float = Field(1.0, ge=0, le=10, description="0 picks the likeliest token.")
    top_k: int = Field(0, ge=0, le=100000)
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus: 0.95 as `aurl generate`.")
    guidance: float | None = Field(None, gt=0, le=20, description=(
        "Classifier-free guidance of the controls (1: none); default as `aurl generate`: 2 "
        "where a key or a bar control is asked and the piece is not steered, else 1."))  # fmt: skip
    steer: float | None = Field(None, ge=0, le=100, description=(
        "Steering (0: none): a new piece towards the key and bar controls asked (default 2 "
        "where one is, else 0), infilled bars and harmonies towards smooth voice leading "
        "(default 2), as the CLI."))  # fmt: skip


class GenerateRequest(Sampling):
    bars: int = Field(8, ge=1, description="New bars per piece.")
    num: int = Field(1, ge=1, description="Pieces.")
    prompt: str | None = Field(None, description="A MIDI file to continue, base64.")
    prompt_bars: int = Field(4, ge=1, le=512, description="Bars of the prompt to keep.")
    controls: Controls = Controls()
    model: str | None = _MODEL


class InfillRequest(Sampling):
    midi: str = Field(description="The piece, base64 MIDI.")
    bars: str = Field("1-2", max_length=32, description="Bars to regenerate, from 1: '5-8'.")
    tracks: str | None = Field(None, max_length=256, description="Only these tracks: 'alto'.")
    num: int = Field(1, ge=1)
    controls: Controls = Field(Controls(), description="Style, key and bar controls only.")
    model: str | None = _MODEL


class HarmonizeRequest(Sampling):
    midi: str = Field(description="A one-track melody, base64 MIDI.")
    num: int = Field(1, ge=1)
    controls: Controls = Field(Controls(), description="Style, key and bar controls only.")
    model: str | None = _MODEL


class MidiRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    midi: str = Field(description="A MIDI file, base64.")


class NoteOut(BaseModel):
    track: int
    pitch: int
    start: float = Field(description="Seconds.")
    duration: float = Field(description="Seconds.")
    velocity: int


class PieceOut(BaseModel):
    midi: str = Field(description="The piece, base64 MIDI.")
    bars: int
    notes: int
    seconds: float
    ended_short: bool = Field(False, description="Fewer bars than asked (budget or time).")
    tracks: list[str] | None = Field(None, description="Track names (with_notes).")
    bar_starts: list[float] | None = Field(None, description="Bar lines, s (with_notes).")
    note_list: list[NoteOut] | None = Field(None, description="Every note (with_notes).")


class PiecesOut(BaseModel):
    pieces: list[PieceOut]
    new_tokens: int = Field(description="Tokens sampled for this request.")
    tokens_per_second: float
    model: str
