"""The caps a server puts on every request (shown at ``/info``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    """Request caps.

    Attributes:
        max_upload_bytes: the largest MIDI file a request may carry (decoded).
        max_bars: the most new bars a request may ask for.
        max_num: the most pieces one request may ask for.
        max_rows: the rows of the shared batch (requests wait for room beyond).
        request_seconds: generation stops after this long; the pieces come back as they are.
        max_render_seconds: the longest piece ``/render`` synthesizes.
        max_piece_quarters: the longest piece any route reads, in quarter notes (after the
            repairs ``aurl prepare`` makes; about 68 minutes at 120 bpm).
        max_body_bytes: the largest request body (base64 MIDI plus the rest).
    """

    max_upload_bytes: int = 1 << 20
    max_bars: int = 64
    max_num: int = 8
    max_rows: int = 32
    request_seconds: float = 60.0
    max_render_seconds: float = 600.0
    max_piece_quarters: int = 8192

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes * 4 // 3 + 64 * 1024

    def as_dict(self) -> dict:
        return {**asdict(self), "max_body_bytes": self.max_body_bytes}
