"""Read, repair and encode many MIDI files in worker processes that one bad file cannot stop.

Each file goes through the stages of :mod:`aurl.data.pipeline` in a worker process. A file
that raises, that crashes its worker (a segfault, an abort) or that runs past the time
limit is reported with its stage and reason; a dead or stuck worker is replaced and the
run goes on. Results come back in file order whatever the scheduling, and a file whose
content (after repair) equals an earlier file's is reported as its duplicate.

Files go to the workers in chunks of ``CHUNK`` (see :func:`~aurl.data.pipeline.process_chunk`).
The time limit holds per file in the per-file steps and per batch in the others; when a
worker dies or runs out of time in a batch step, the chunk's files are run again one by
one, so the failure is pinned on the file that caused it.

Each worker holds at most two chunks at a time, and no file more than ``WINDOW`` files
ahead of the oldest one still running is handed out, so a slow file never lets finished
results pile up in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.connection import wait

from aurl.data.pipeline import (
    DUPLICATE,
    SKIPPED,
    STAGES,
    USED,
    FileResult,
    IngestOptions,
    process_chunk,
)
from aurl.tokens import Tokenizer

CHUNK = 16  # files handed to a worker in one message
PER_WORKER = 2  # chunks a worker holds at once, so it never waits for the next
WINDOW = 256  # no file more than this far ahead of the oldest unfinished one is handed out
STARTUP_TIMEOUT_S = 300.0
_READY = "ready"


def ingest(
    files: list[str],
    tokenizer: Tokenizer,
    workers: int = 2,
    options: IngestOptions | None = None,
) -> Iterator[FileResult]:
    """Read, repair and encode ``files``, yielding one result per file in file order.

    Args:
        files: MIDI file paths.
        tokenizer: Encodes each repaired Score.
        workers: Worker processes; 0 works in this process (no time limit, no protection
            against crashes: for debugging only).
        options: Time limit, strictness, open-note scanning, test hook.

    Yields:
        One FileResult per file, in the order of ``files``. Of files with equal content the
        first is USED and the others are DUPLICATE, naming it in ``duplicate_of``.
    """
    options = options or IngestOptions()
    if not files:
        return
    yield from mark_duplicates(process_files(files, tokenizer, workers, options))


def process_files(
    files: list[str], tokenizer: Tokenizer, workers: int, options: IngestOptions
) -> Iterator[FileResult]:
    """Every file's result in order, without deduplication."""
    if workers <= 0:
        for first in range(0, len(files), CHUNK):
            jobs = list(enumerate(files[first : first + CHUNK], start=first))
            yield from process_chunk(jobs, tokenizer, options)
    else:
        yield from _pool(files, tokenizer, min(workers, len(files)), options)


def mark_duplicates(results: Iterable[FileResult]) -> Iterator[FileResult]:
    """Pass results through in order; of results with equal content, the first stays USED and
    the others become DUPLICATE, naming it in ``duplicate_of``."""
    seen: dict[str, str] = {}
    for result in results:
        if result.status == USED:
            first = seen.setdefault(result.digest, result.file)
            if first != result.file:
                result.status, result.stage, result.ids = DUPLICATE, "dedupe", None
                result.duplicate_of, result.reason = first, f"duplicate of {first}"
        yield result


def is_transient(result: FileResult) -> bool:
    """A skip that may not happen again (a crash or a time limit under load): not cached."""
    return (
        result.status == SKIPPED
        and bool(result.reason)
        and (result.reason.startswith("worker crashed") or result.reason.startswith("timed out"))
    )


def _worker_main(conn, tokenizer_config: dict, options: IngestOptions, progress) -> None:
    """A worker process: answer each chunk of (index, path) jobs with its FileResults."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    tokenizer = Tokenizer.from_dict(tokenizer_config)

    def on_stage(position: int, stage: int) -> None:
        if position != progress.position:  # a new file, or a batch: its time starts now
            progress.started = time.monotonic()
            progress.position = position
        progress.stage = stage

    conn.send(_READY)
    while True:
        try:
            jobs = conn.recv()
        except EOFError:
            return
        if jobs is None:
            return
        results = process_chunk(jobs, tokenizer, options, on_stage)
        progress.position = _IDLE
        conn.send(results)


_IDLE = -2  # the position a worker reports between chunks


class _Progress(ctypes.Structure):
    """What a worker is doing, in shared memory: the position in its chunk of the file it is
    on (``BATCH`` while it finishes a batch), the stage, and when that file or batch began
    (``time.monotonic()``, the same clock in every process)."""

    _fields_ = [("position", ctypes.c_int), ("stage", ctypes.c_int),
                ("started", ctypes.c_double)]  # fmt: skip


class _Worker:
    """One worker process, its pipe, its progress and the chunks it holds, oldest first."""

    def __init__(self, ctx, tokenizer_config: dict, options: IngestOptions):
        self.progress = ctx.RawValue(_Progress, _IDLE, 0, 0.0)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, daemon=True,
                                   args=(child, tokenizer_config, options, self.progress))  # fmt: skip
        self.process.start()
        child.close()
        self.jobs: deque[list[int]] = deque()
        self.ready = False
        self.since = time.monotonic()  # start-up, then when its oldest chunk was handed out

    def send(self, chunk: list[int], files: list[str]) -> None:
        if not self.jobs:
            self.since = time.monotonic()
        self.jobs.append(chunk)
        with contextlib.suppress(OSError):  # a dead worker is noticed by its exit code
            self.conn.send([(i, files[i]) for i in chunk])

    def started(self) -> float:
        """When the file or batch it is on began (or its oldest chunk was handed out)."""
        p = self.progress
        return max(self.since, p.started) if p.position != _IDLE else self.since

    def receive(self) -> tuple[list[FileResult], bool]:
        """Results waiting in the pipe, and whether the pipe is closed."""
        results = []
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message == _READY:
                    self.ready, self.since = True, time.monotonic()
                    continue
                self.jobs.popleft()
                self.since = time.monotonic()
                results.extend(message)
        except (EOFError, OSError):
            return results, True
        return results, False

    def stop(self, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _pool(
    files: list[str], tokenizer: Tokenizer, workers: int, options: IngestOptions
) -> Iterator[FileResult]:
    """Run ``process_chunk`` over ``files`` in worker processes; yield results in order."""
    ctx = mp.get_context("spawn")
    config = tokenizer.to_dict()
    pool = [_Worker(ctx, config, options) for _ in range(workers)]
    # Chunks not handed out yet, in order; a chunk run again after a failure may be shorter.
    todo = deque(list(range(i, min(i + CHUNK, len(files)))) for i in range(0, len(files), CHUNK))
    done: dict[int, FileResult] = {}
    next_out = 0
    try:
        while next_out < len(files):
            for w in pool:
                while len(w.jobs) < PER_WORKER and todo and todo[0][0] < next_out + WINDOW:
                    w.send(todo.popleft(), files)
            wait([w.conn for w in pool] + [w.process.sentinel for w in pool],
                 timeout=_next_deadline(pool, options.timeout))  # fmt: skip
            for k, w in enumerate(pool):
                results, closed = w.receive()
                done.update((r.index, r) for r in results)
                failure = _failure(w, closed, options.timeout)
                if failure is None:
                    continue
                if w.jobs:
                    chunk = w.jobs.popleft()
                    todo.extendleft(reversed(w.jobs))
                    todo.extendleft(reversed(_after_failure(chunk, w.progress, failure,
                                                            files, done)))  # fmt: skip
                w.stop(kill=True)
                pool[k] = _Worker(ctx, config, options)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        for w in pool:
            w.stop()


def _after_failure(
    chunk: list[int], progress: _Progress, failure: str, files: list[str],
    done: dict[int, FileResult],
) -> list[list[int]]:  # fmt: skip
    """Record the failure of the file that caused it, if known, and return the chunks to
    run again: the chunk's other files, or, when a batch failed, each of its files alone."""
    position, stage = progress.position, STAGES[progress.stage]
    if len(chunk) == 1 or 0 <= position < len(chunk):
        culprit = chunk[0] if len(chunk) == 1 else chunk[position]
        done[culprit] = FileResult(culprit, files[culprit], SKIPPED, stage, failure)
        rest = [i for i in chunk if i != culprit]
        return [rest] if rest else []
    return [[i] for i in chunk]


def _next_deadline(pool: list[_Worker], timeout: float) -> float:
    """Seconds until the earliest worker's current file (or start-up) runs out of time."""
    now = time.monotonic()
    ends = [w.started() + (timeout if w.ready else STARTUP_TIMEOUT_S) - now
            for w in pool if w.jobs]  # fmt: skip
    return min([1.0, *ends]) if ends else 1.0


def _failure(w: _Worker, closed: bool, timeout: float) -> str | None:
    """Why a worker must be replaced (it died, or its file ran out of time), or None."""
    code = w.process.exitcode
    if code is None and closed:  # its pipe is gone: it is dying, or no use alive
        w.process.join(timeout=1.0)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        code = w.process.exitcode
    if code is not None:
        if not w.ready:
            raise RuntimeError(f"a prepare worker failed to start ({_exit_reason(code)})")
        return f"worker crashed ({_exit_reason(code)})"
    if not w.jobs:
        return None
    elapsed = time.monotonic() - w.started()
    if w.ready and elapsed > timeout:
        return f"timed out after {timeout:g} s"
    if not w.ready and elapsed > STARTUP_TIMEOUT_S:
        raise RuntimeError(f"a prepare worker did not start within {STARTUP_TIMEOUT_S:g} s")
    return None


def _exit_reason(code: int) -> str:
    """'killed by SIGSEGV' for a signal, 'exit code 3' otherwise."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
