"""A progress bar for long generations: bars done of bars asked, and tokens/s."""

from __future__ import annotations

import time

from tqdm import tqdm


class GenerationProgress:
    """Context manager whose :meth:`update` takes the sampling engine after every step and
    redraws at most a few times a second (reading the engine costs a little).

    Args:
        total: new bars asked for, over all pieces.
        prompt_bars: bars each piece starts with (not counted as done).
        enabled: False draws nothing.
    """

    def __init__(self, total: int, prompt_bars: int = 0, enabled: bool = True):
        self.total, self.prompt_bars, self.enabled = total, prompt_bars, enabled
        self.bar: tqdm | None = None
        self.t0 = self.last = 0.0

    def __enter__(self) -> GenerationProgress:
        if self.enabled:
            self.bar = tqdm(total=self.total, desc="generate", unit="bar", leave=False)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, engine) -> None:
        now = time.perf_counter()
        if self.bar is None or now - self.last < 0.25:
            return
        self.last = now
        open_bar = (~engine.done).long()  # a live row's current bar is not finished yet
        done = (engine.state.bars - open_bar - self.prompt_bars).clamp(min=0).sum()
        tokens = int((engine.length - engine.prompt_len).sum())
        self.bar.n = min(int(done), self.total)
        self.bar.set_postfix_str(f"{tokens / (now - self.t0):.0f} tokens/s", refresh=False)
        self.bar.refresh()
