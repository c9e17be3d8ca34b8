"""Read, repair and encode many MIDI files in worker processes that one bad file cannot stop.

Each file goes through three stages, ``read`` (parse), ``repair`` (see
:mod:`aurl.midi.repair`) and ``encode``, in a worker process. A file that raises, that
crashes its worker (a segfault, an abort) or that runs past the time limit is reported with
its stage and reason; a dead or stuck worker is replaced and the run goes on. Results come
back in file order whatever the scheduling, and a file whose content (after repair) equals
an earlier file's is reported as its duplicate.

Each worker holds at most two files at a time, and no file more than ``WINDOW`` files
ahead of the oldest one still running is handed out, so a slow file never lets finished
results pile up in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np
import symusic

from aurl.data.metadata import piece_metadata
from aurl.data.preprocess import PreprocessConfig, preprocess
from aurl.midi import MidiError
from aurl.midi.read import parse_midi_bytes, read_file_bytes
from aurl.midi.repair import close_open_notes, may_have_open_notes, repair_score, track_notes
from aurl.tokens import Tokenizer

STAGES = ("read", "repair", "preprocess", "encode")
USED, SKIPPED, DUPLICATE = "used", "skipped", "duplicate"
DEFAULT_TIMEOUT_S = 10.0
PER_WORKER = 2  # files handed to a worker at once, so it never waits for the next
WINDOW = 256  # no file more than this far ahead of the oldest unfinished one is handed out
STARTUP_TIMEOUT_S = 300.0
_READY = "ready"


@dataclass(frozen=True)
class IngestOptions:
    """How files are read.

    Attributes:
        timeout: Seconds one file may take in a worker before the worker is replaced.
        strict: Skip a file that needs any repair (the reason names the repairs).
        scan_all: Look for notes never closed in every file, not only in files that show
            the sign of them (a Score or a track without notes) or needed clipping; slower.
        hook: Called in the worker as ``hook(stage, path)`` when a file enters a stage;
            must be picklable (a module-level function). For fault-injection tests.
        preprocess: Steps applied to each repaired Score before encoding.
    """

    timeout: float = DEFAULT_TIMEOUT_S
    strict: bool = False
    scan_all: bool = False
    hook: Callable[[str, str], None] | None = None
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


@dataclass
class FileResult:
    """What happened to one file."""

    index: int
    file: str
    status: str  # USED, SKIPPED or DUPLICATE
    stage: str | None = None  # where a file not used stopped: read, repair, encode, dedupe
    reason: str | None = None
    repairs: list[str] = field(default_factory=list)
    notes: int = 0
    digest: str | None = None  # hash of the content after repair
    duplicate_of: str | None = None
    ids: np.ndarray | None = None
    meta: dict | None = None  # key, tempo, meter, programs, density, duration, source

    def record(self) -> dict:
        """The file's line in the report: file, status, stage, reason, repairs, duplicate_of."""
        return {
            "file": self.file,
            "status": self.status,
            "stage": self.stage,
            "reason": self.reason,
            "repairs": self.repairs,
            "duplicate_of": self.duplicate_of,
            "notes": self.notes,
        }


def content_digest(score: symusic.Score, notes: list[dict] | None = None) -> str:
    """Hash of what a Score holds musically: its notes (with program, drums as 128), tempos
    and time signatures, with times scaled so that the ticks-per-quarter chosen by the
    file's writer does not matter. Track names, order and splitting do not count.

    Args:
        score: The Score.
        notes: ``track_notes(score)``, if the caller has it already.
    """
    keys = ("time", "duration", "pitch", "velocity")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*keys, "program")}
    for track, arrays in zip(score.tracks, track_notes(score) if notes is None else notes,
                             strict=True):  # fmt: skip
        for k in keys:
            parts[k].append(arrays[k])
        program = 128 if track.is_drum else int(track.program)
        parts["program"].append(np.full(len(arrays["time"]), program, np.int64))
    cols = {k: np.concatenate(v).astype(np.int64) if v else np.zeros(0, np.int64)
            for k, v in parts.items()}  # fmt: skip
    tempos, sigs = score.tempos.numpy(), score.time_signatures.numpy()
    unit = int(np.gcd.reduce(np.concatenate([
        cols["time"], cols["duration"], tempos["time"], sigs["time"], [score.tpq]
    ]).astype(np.int64)))  # fmt: skip
    unit = max(abs(unit), 1)  # times / unit: the same for any multiple of the resolution
    order = np.lexsort([cols[k] for k in ("program", "velocity", "duration", "pitch", "time")])
    h = hashlib.blake2b(str(score.tpq // unit).encode(), digest_size=16)
    for k in ("time", "duration"):
        h.update((cols[k][order] // unit).tobytes())
    for k in ("pitch", "velocity", "program"):
        h.update(cols[k][order].tobytes())
    h.update((tempos["time"].astype(np.int64) // unit).tobytes() + tempos["mspq"].tobytes())
    h.update((sigs["time"].astype(np.int64) // unit).tobytes())
    h.update(sigs["numerator"].tobytes() + sigs["denominator"].tobytes())
    return h.hexdigest()


def process_file(
    index: int,
    path: str,
    tokenizer: Tokenizer,
    options: IngestOptions,
    on_stage: Callable[[int], None] | None = None,
) -> FileResult:
    """Read, repair and encode one file; never raises for a bad file.

    Args:
        index: The file's position in the run.
        path: The MIDI file.
        tokenizer: Encodes the repaired Score.
        options: Strictness, open-note scanning and the test hook.
        on_stage: Told the index in ``STAGES`` of each stage as the file enters it.

    Returns:
        The file's result: USED with its token ids, or SKIPPED with stage and reason.
    """
    stage, repairs = STAGES[0], []

    def enter(name: str) -> None:
        nonlocal stage
        stage = name
        if on_stage is not None:
            on_stage(STAGES.index(name))
        if options.hook is not None:
            options.hook(name, path)

    try:
        enter("read")
        parsed = parse_midi_bytes(read_file_bytes(path), path)
        enter("repair")
        score, notes, repairs = _repair(parsed, options.scan_all)
        if options.strict and repairs:
            reason = "needs repair: " + ", ".join(repairs)
            return FileResult(index, path, SKIPPED, stage, reason, repairs)
        if score.note_num() == 0:
            where = "repair" if repairs else "read"
            return FileResult(index, path, SKIPPED, where, "no notes", repairs)
        digest = content_digest(score, notes)
        enter("preprocess")
        score = preprocess(score, options.preprocess)
        if score.note_num() == 0:
            return FileResult(index, path, SKIPPED, stage, "no notes left", repairs)
        meta = piece_metadata(score, path)
        enter("encode")
        ids = tokenizer.encode(score)
        return FileResult(index, path, USED, None, None, repairs, score.note_num(), digest,
                          ids=ids, meta=meta)  # fmt: skip
    except MidiError as err:
        return FileResult(index, path, SKIPPED, stage, err.reason, repairs)
    except Exception as err:  # a bug or a pathological file: report it, keep going
        return FileResult(index, path, SKIPPED, stage, _describe(err), repairs)


def _repair(parsed, scan_all: bool) -> tuple[symusic.Score, list[dict], list[str]]:
    """The repaired Score of a parsed file, its track notes and the repairs it needed."""
    repairs = ["clipped_data_bytes"] if parsed.clipped else []
    score = parsed.score
    # The scan is a Python pass over every event: it runs when asked, when the file shows
    # the sign of open notes, or when clipping (itself a slow pass) may have unpaired some.
    if scan_all or parsed.clipped or may_have_open_notes(score):
        data, closed = close_open_notes(parsed.data)
        if closed:
            score = symusic.Score.from_midi(data)
            repairs.append("closed_open_notes")
    notes = track_notes(score)
    repaired, more = repair_score(score, notes)
    if repaired is not score:
        notes = track_notes(repaired)
    return repaired, notes, repairs + more


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


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
        results = (process_file(i, f, tokenizer, options) for i, f in enumerate(files))
    else:
        results = _pool(files, tokenizer, min(workers, len(files)), options)
    yield from results


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


def _worker_main(conn, tokenizer_config: dict, options: IngestOptions, stage) -> None:
    """A worker process: answer each (index, path) job with its FileResult until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    tokenizer = Tokenizer.from_dict(tokenizer_config)

    def on_stage(k: int) -> None:
        stage.value = k

    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(process_file(*job, tokenizer, options, on_stage))


class _Worker:
    """One worker process, its pipe, its current stage and the jobs it holds, oldest first."""

    def __init__(self, ctx, tokenizer_config: dict, options: IngestOptions):
        self.stage = ctx.RawValue("b", 0)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, daemon=True,
                                   args=(child, tokenizer_config, options, self.stage))  # fmt: skip
        self.process.start()
        child.close()
        self.jobs: deque[int] = deque()
        self.ready = False
        self.since = time.monotonic()  # start-up, then when the oldest job started

    def send(self, index: int, path: str) -> None:
        if not self.jobs:
            self.since = time.monotonic()
        self.jobs.append(index)
        with contextlib.suppress(OSError):  # a dead worker is noticed by its exit code
            self.conn.send((index, path))

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
                results.append(message)
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
    """Run ``process_file`` over ``files`` in worker processes; yield results in order."""
    ctx = mp.get_context("spawn")
    config = tokenizer.to_dict()
    pool = [_Worker(ctx, config, options) for _ in range(workers)]
    todo = deque(range(len(files)))  # jobs not handed out yet, in order
    done: dict[int, FileResult] = {}
    next_out = 0
    try:
        while next_out < len(files):
            for w in pool:
                while len(w.jobs) < PER_WORKER and todo and todo[0] < next_out + WINDOW:
                    i = todo.popleft()
                    w.send(i, files[i])
            wait([w.conn for w in pool] + [w.process.sentinel for w in pool],
                 timeout=_next_deadline(pool, options.timeout))  # fmt: skip
            for k, w in enumerate(pool):
                results, closed = w.receive()
                done.update((r.index, r) for r in results)
                failure = _failure(w, closed, options.timeout)
                if failure is None:
                    continue
                if w.jobs:
                    index = w.jobs.popleft()
                    stage = STAGES[w.stage.value]
                    done[index] = FileResult(index, files[index], SKIPPED, stage, failure)
                    todo.extendleft(reversed(w.jobs))
                w.stop(kill=True)
                pool[k] = _Worker(ctx, config, options)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        for w in pool:
            w.stop()


def _next_deadline(pool: list[_Worker], timeout: float) -> float:
    """Seconds until the earliest worker's current file (or start-up) runs out of time."""
    now = time.monotonic()
    ends = [w.since + (timeout if w.ready else STARTUP_TIMEOUT_S) - now for w in pool if w.jobs]
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
    elapsed = time.monotonic() - w.since
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
