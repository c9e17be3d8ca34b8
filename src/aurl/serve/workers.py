"""Analysis off the server's process: a pool of worker processes, one request each at a time.

Analysing a piece is pure Python and numpy, so in the server's own process every request
would hold the one interpreter lock that the event loop and the batching threads need too,
and use one core however many the machine has. The workers read the upload (base64, repair,
limits) and analyse it, and answer the JSON text itself, so the server only passes strings.
They import no model code (no torch). A worker that dies is replaced: the request it held
gets a 500 and the next ones a new pool. With ``processes=0`` the work runs on the server's
thread pool instead (tests, small machines).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fastapi.concurrency import run_in_threadpool


def analyze_upload(text: str, max_bytes: int, max_quarters: int) -> tuple[int, str]:
    """``(200, analysis JSON)`` for a base64 MIDI upload, or ``(status, one-line reason)``."""
    from aurl.analysis.analyze import analyze_piece
    from aurl.analysis.piece import piece_from_score
    from aurl.serve.upload import PayloadError, midi_from_base64

    try:
        score = midi_from_base64(text, "midi", max_bytes, max_quarters)
        summary = analyze_piece(piece_from_score(score, "upload")).summary
    except PayloadError as err:
        return err.status, str(err)
    except ValueError as err:  # a piece the analysis cannot read (no pitched notes)
        return 400, f"midi: {err}"
    return 200, json.dumps(summary)


def _warm() -> None:
    """Import what a request needs before the first one comes."""
    import aurl.analysis.analyze  # noqa: F401
    import aurl.serve.upload  # noqa: F401


class Workers:
    """The analysis pool of a server.

    Args:
        processes: worker processes (0: the server's thread pool).
    """

    def __init__(self, processes: int):
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # never fork torch's threads
                self._pool = ProcessPoolExecutor(self.processes, mp_context=context,
                                                 initializer=_warm)  # fmt: skip
            return self._pool

    def start(self) -> None:
        """Start the workers now rather than at the first request."""
        if self.processes:
            pool = self._executor()
            for future in [pool.submit(_warm) for _ in range(self.processes)]:
                future.result()

    async def analyze(self, text: str, max_bytes: int, max_quarters: int) -> tuple[int, str]:
        """See :func:`analyze_upload`."""
        if not self.processes:
            return await run_in_threadpool(analyze_upload, text, max_bytes, max_quarters)
        pool = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, analyze_upload, text, max_bytes, max_quarters)  # fmt: skip
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return 500, "internal error: an analysis worker died; it has been replaced"

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
