"""Continuous batching: every generation request of a model shares one running batch.

One thread owns the model's :class:`~aurl.generate.engine.Engine`. Between two steps it
takes the requests that have come (as many rows as the batch has room for), adds their rows
to the running batch, and after each step hands every finished row back to its request, and
every finished bar to a request that streams. A request whose client has gone is dropped from
the batch at the next step, and its rows' slots go to the next requests. Each row draws with
its own settings and seed (:mod:`aurl.generate.draws`), so a request's music does not depend
on what else shares the batch.

With ``batching`` off the thread takes one request at a time (for comparison).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from aurl.generate.controls import ControlPlan
from aurl.generate.draws import RowSampling
from aurl.generate.engine import Engine, SamplingConfig

# on_bar(row of the request, bar number, ids so far, last): called on the batching thread.
BarCallback = Callable[[int, int, np.ndarray, bool], None]


@dataclass
class Job:
    """One request: its rows' prompts, limits, controls and settings; ``future`` gets the
    rows' ids (prompt included) in order, or the error that stopped them.

    ``deadline`` (a ``time.monotonic()`` value) ends the rows still running at that time,
    as they are; ``skip`` is the number of prompt bars a streaming request does not want
    reported."""

    prompts: list[torch.Tensor]
    max_bars: int
    max_tokens: int
    plans: list[ControlPlan | None]
    samplings: list[RowSampling]
    deadline: float
    on_bar: BarCallback | None = None
    skip: int = 0
    guidance: float = 1.0  # classifier-free guidance of the controls
    steer: float = 0.0  # steering strength towards them
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    rows: list[int] = field(default_factory=list)  # the engine rows of its pieces, in order
    results: dict[int, np.ndarray] = field(default_factory=dict)  # piece index -> ids

    def cancel(self) -> None:
        """Stop this request's rows at the next step (its client went away)."""
        self.cancelled.set()


class Batcher:
    """The batching thread of one model.

    Args:
        model: the transformer (eval mode).
        vocab: its vocabulary.
        max_rows: how many rows the running batch may hold.
        batching: False takes one request at a time.
        grammar: sample under the grammar mask.
    """

    def __init__(self, model, vocab, max_rows: int = 32, batching: bool = True,
                 grammar: bool = True):  # fmt: skip
        self.model, self.vocab = model, vocab
        self.max_rows, self.batching = max_rows, batching
        self.config = SamplingConfig(grammar=grammar)
        self.inbox: queue.Queue[Job] = queue.Queue()
        self.waiting: list[Job] = []
        self.owner: dict[int, Job] = {}  # engine row -> its job, for live rows
        self.bars: dict[int, int] = {}  # engine row -> bars begun so far
        self.engine = Engine(model, vocab, self.config)
        self.steps = 0  # batched steps taken, for /info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aurl-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        """Queue a request; its future completes when all its rows are done."""
        if len(job.prompts) > self.max_rows:
            raise ValueError(f"num {len(job.prompts)} is more than the batch holds "
                             f"({self.max_rows})")  # fmt: skip
        self.inbox.put(job)
        return job.future

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def live_rows(self) -> int:
        return len(self.owner)

    # -- the thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            try:
                self._admit(block=not self.owner)
                if self.owner:
                    self._step()
            except Exception as err:  # never let the thread die: fail the batch, go on
                self._fail_all(err)

    def _admit(self, block: bool) -> None:
        """Add waiting requests while the batch has room (waiting a moment for one when
        idle); without batching, only into an empty batch."""
        try:
            if block:
                self.waiting.append(self.inbox.get(timeout=0.2))
            while True:
                self.waiting.append(self.inbox.get_nowait())
        except queue.Empty:
            pass
        ready: list[Job] = []
        room = self.max_rows - len(self.owner)
        while self.waiting:
            job = self.waiting[0]
            if job.cancelled.is_set():
                self.waiting.pop(0).future.cancel()
                continue
            if len(job.prompts) > room or ((self.owner or ready) and not self.batching):
                break
            room -= len(job.prompts)
            ready.append(self.waiting.pop(0))
        if ready:
            self._start(ready)

    def _start(self, jobs: list[Job]) -> None:
        """Add the rows of ``jobs`` to the batch in one call (one prefill for all); if the
        engine refuses them, each job is tried alone so that only a bad one fails."""
        if not self.owner and self.engine.batch > self.max_rows:
            self.engine = Engine(self.model, self.vocab, self.config)  # shed an old big batch
        try:
            rows = self.engine.add(
                [p for j in jobs for p in j.prompts],
                [j.max_bars for j in jobs for _ in j.prompts],
                [j.max_tokens for j in jobs for _ in j.prompts],
                [p for j in jobs for p in j.plans], [s for j in jobs for s in j.samplings],
                [j.guidance for j in jobs for _ in j.prompts],
                [j.steer for j in jobs for _ in j.prompts])  # fmt: skip
        except Exception as err:
            if len(jobs) == 1:  # a request the engine cannot take fails alone
                jobs[0].future.set_exception(err)
            else:
                for job in jobs:
                    self._start([job])
            return
        for job in jobs:
            job.rows, rows = rows[: len(job.prompts)], rows[len(job.prompts) :]
            for r in job.rows:
                self.owner[r] = job
                self.bars[r] = int((self.engine.row(r) == self.engine.bar_id).sum())

    def _step(self) -> None:
        engine = self.engine
        now = time.monotonic()
        for job in {id(j): j for j in self.owner.values()}.values():
            if job.cancelled.is_set() or now > job.deadline:
                job.timed_out = not job.cancelled.is_set()
                engine.drop([r for r in job.rows if r in self.owner])
        live = ~engine.done
        try:
            tok = engine.step()
        except Exception as err:  # fail every request in the batch, keep serving
            self._fail_all(err)
            return
        self.steps += 1
        opened = ((tok == engine.bar_id) & live).nonzero().flatten().tolist()
        for r in opened:
            self.bars[r] += 1
            job = self.owner[r]
            if job.on_bar is not None and self.bars[r] - 1 > job.skip:
                ids = engine.row(r)[:-1].cpu().numpy().copy()
                job.on_bar(job.rows.index(r), self.bars[r] - 1, ids, False)
        done = engine.done.tolist()  # one read, not one tensor index per row
        for r in [r for r in list(self.owner) if done[r]]:
            self._finish(r)
        self._compact()

    def _finish(self, r: int) -> None:
        job = self.owner.pop(r)
        ids = self.engine.row(r).cpu().numpy().copy()  # the slot is reused
        piece = job.rows.index(r)
        job.results[piece] = ids
        if job.on_bar is not None and not job.cancelled.is_set():
            job.on_bar(piece, self.bars.pop(r), ids, True)
        if len(job.results) == len(job.rows):
            if job.cancelled.is_set():
                job.future.cancel()
            elif not job.future.done():
                job.future.set_result([job.results[i] for i in range(len(job.rows))])

    def _compact(self) -> None:
        """Drop finished rows from the engine once they are half of it (the engine stops
        computing them earlier, but masks and draws for every row of the batch)."""
        batch, live = self.engine.batch, sorted(self.owner)
        if batch < 4 or 2 * len(live) > batch:
            return
        self.engine.reorder(torch.tensor(live, dtype=torch.long, device=self.engine.device))
        new = {old: i for i, old in enumerate(live)}
        for job in {id(j): j for j in self.owner.values()}.values():
            job.rows = [new.get(r, -1) if i not in job.results else -1
                        for i, r in enumerate(job.rows)]  # fmt: skip
        self.owner = {new[r]: job for r, job in self.owner.items()}
        self.bars = {new[r]: n for r, n in self.bars.items() if r in new}

    def _fail_all(self, err: Exception) -> None:
        for job in {id(j): j for j in self.owner.values()}.values():
            if not job.future.done():
                job.future.set_exception(err)
        self.owner.clear()
        self.engine = Engine(self.model, self.vocab, self.config)
