"""Read, repair and encode many MIDI files in worker processes that one bad file cannot stop.

Each file goes through the stages ``read`` (parse), ``repair`` (see
:mod:`aurl.midi.repair`), ``preprocess`` and ``encode`` (content hash, metadata, token
ids), in a worker process. A file that raises, that
crashes its worker (a segfault, an abort) or that runs past the time limit is reported with
its stage and reason; a dead or stuck worker is replaced and the run goes on. Results come
back in file order whatever the scheduling, and a file whose content (after repair) equals
an earlier file's is reported as its duplicate.

Files go to the workers in chunks of ``CHUNK``. A worker reads each file of a chunk, looks
at all of them at once for what may need repair, repairs and preprocesses each, then
hashes, describes and encodes the files left in one vectorized batch: for small files
numpy's overhead per call, not the notes, is most of the cost. The time limit holds per
file in the per-file steps and per batch in the others; when a worker dies or runs out of
time in a batch step, the chunk's files are run again one by one, so the failure is pinned
on the file that caused it.

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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait

import numpy as np
import symusic

from aurl.data.digest import content_digests
from aurl.data.metadata import pieces_metadata
from aurl.data.preprocess import PreprocessConfig, preprocess
from aurl.midi import MidiError
from aurl.midi.arrays import NoteTable, ScoreArrays, note_table, score_arrays
from aurl.midi.read import ParsedMidi, parse_midi_bytes, read_file_bytes
from aurl.midi.repair import apply_repairs, close_open_notes, may_have_open_notes, may_need_repair
from aurl.tokens import Tokenizer
from aurl.tokens.encode import encode_many

STAGES = ("read", "repair", "preprocess", "encode")
USED, SKIPPED, DUPLICATE = "used", "skipped", "duplicate"
DEFAULT_TIMEOUT_S = 10.0
CHUNK = 16  # files handed to a worker in one message
BATCH_NOTES = 50_000  # files are hashed, described and encoded together up to this many notes
PER_WORKER = 2  # chunks a worker holds at once, so it never waits for the next
WINDOW = 256  # no file more than this far ahead of the oldest unfinished one is handed out
BATCH = -1  # the position a worker reports while it finishes a batch of files
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


def process_file(
    index: int,
    path: str,
    tokenizer: Tokenizer,
    options: IngestOptions,
    on_stage: Callable[[int, int], None] | None = None,
) -> FileResult:
    """Read, repair and encode one file; never raises for a bad file.

    Args:
        index: The file's position in the run.
        path: The MIDI file.
        tokenizer: Encodes the repaired Score.
        options: Strictness, open-note scanning and the test hook.
        on_stage: See :func:`process_chunk`.

    Returns:
        The file's result: USED with its token ids, or SKIPPED with stage and reason.
    """
    return process_chunk([(index, path)], tokenizer, options, on_stage)[0]


@dataclass
class _File:
    """One file on its way through the stages of :func:`process_chunk`."""

    position: int  # in the chunk
    index: int  # in the run
    path: str
    entered: set[str] = field(default_factory=set)
    repairs: list[str] = field(default_factory=list)
    parsed: ParsedMidi | None = None
    repaired: symusic.Score | None = None  # what the content hash covers
    repaired_arrays: ScoreArrays | None = None
    checked: symusic.Score | None = None  # the Score the repair check looked at
    score: symusic.Score | None = None  # preprocessed: what is described and encoded
    arrays: ScoreArrays | None = None
    result: FileResult | None = None  # set once the file is skipped or finished


def process_chunk(
    jobs: list[tuple[int, str]],
    tokenizer: Tokenizer,
    options: IngestOptions,
    on_stage: Callable[[int, int], None] | None = None,
) -> list[FileResult]:
    """:func:`process_file` for each ``(index, path)``, results in the same order.

    Each file is read on its own; the quick repair check then looks at all of them in
    one pass; each file is repaired (where the check says it may need it) and preprocessed
    on its own; the files left are hashed, described and encoded in batches of up to
    ``BATCH_NOTES`` notes. Should a batch step raise, its files go through that step one
    by one, so an error is reported for its file.

    Args:
        jobs: ``(index, path)`` of each file.
        tokenizer: Encodes the repaired Scores.
        options: Strictness, open-note scanning and the test hook.
        on_stage: Told ``(position in jobs, index in STAGES)`` as a file enters a stage, and
            ``(BATCH, index in STAGES)`` as a batch step starts.
    """
    files = [_File(position, index, path) for position, (index, path) in enumerate(jobs)]
    for f in files:
        _stage(f, "read", _read, options, on_stage)
        _stage(f, "repair", lambda f: _close_open_notes(f, options.scan_all), options, on_stage)
    live = [f for f in files if f.result is None]
    flags, checked = _repair_check(live, on_stage)
    for f, flag in zip(live, flags, strict=True):
        _stage(f, "repair", lambda f, flag=flag: _repair(f, flag, options.strict), options,
               on_stage)  # fmt: skip
        _stage(f, "preprocess", lambda f: _preprocess(f, options.preprocess), options, on_stage)
    for batch in _batches([f for f in files if f.result is None]):
        if on_stage is not None:
            on_stage(BATCH, STAGES.index("encode"))
        try:
            # Where nothing changed since the check, its table serves again.
            same = len(batch) == len(live) and all(
                f is g and f.score is f.checked for f, g in zip(batch, live, strict=True)
            )
            _finish(batch, tokenizer, options, checked if same else None)
        except Exception:  # find the file: finish each alone
            for f in batch:
                _stage(f, "encode", lambda f: _finish([f], tokenizer, options), options, None)
    return [f.result for f in files]


def _stage(
    f: _File,
    name: str,
    run: Callable[[_File], None],
    options: IngestOptions,
    on_stage: Callable[[int, int], None] | None,
) -> None:
    """Run one stage of a file not yet skipped; an error skips it, naming the stage."""
    if f.result is not None:
        return
    if on_stage is not None:
        on_stage(f.position, STAGES.index(name))
    try:
        if options.hook is not None and name not in f.entered:
            options.hook(name, f.path)
        f.entered.add(name)
        run(f)
    except MidiError as err:
        f.result = FileResult(f.index, f.path, SKIPPED, name, err.reason, f.repairs)
    except Exception as err:  # a bug or a pathological file: report it, keep going
        f.result = FileResult(f.index, f.path, SKIPPED, name, _describe(err), f.repairs)


def _read(f: _File) -> None:
    f.parsed = parse_midi_bytes(read_file_bytes(f.path), f.path)
    f.repairs = ["clipped_data_bytes"] if f.parsed.clipped else []


def _close_open_notes(f: _File, scan_all: bool) -> None:
    """Close notes never closed, where the file shows the sign of them; then take the
    Score's arrays for the checks to come."""
    # The scan is a Python pass over every event: it runs when asked, when the file shows
    # the sign of open notes, or when clipping (itself a slow pass) may have unpaired some.
    f.repaired = f.parsed.score
    if scan_all or f.parsed.clipped or may_have_open_notes(f.repaired):
        data, closed = close_open_notes(f.parsed.data)
        if closed:
            f.repaired = symusic.Score.from_midi(data)
            f.repairs.append("closed_open_notes")
    f.repaired_arrays = score_arrays(f.repaired)


def _repair_check(live: list[_File], on_stage) -> tuple[list[bool], NoteTable | None]:
    """Whether each file may need the Score-level repairs, from one look at all of them
    (or True for all, should the check raise: the repairs then look for themselves), and
    the table the check looked at."""
    if on_stage is not None and live:
        on_stage(BATCH, STAGES.index("repair"))
    try:
        table = note_table([f.repaired for f in live], [f.repaired_arrays for f in live])
        for f in live:
            f.checked = f.repaired
        return may_need_repair(table), table
    except Exception:
        return [True] * len(live), None


def _repair(f: _File, may_need: bool, strict: bool) -> None:
    if may_need:
        repaired, done = apply_repairs(f.repaired)
        if repaired is not f.repaired:
            f.repaired, f.repaired_arrays = repaired, score_arrays(repaired)
        f.repairs += done
    if strict and f.repairs:
        reason = "needs repair: " + ", ".join(f.repairs)
        f.result = FileResult(f.index, f.path, SKIPPED, "repair", reason, f.repairs)
    elif f.repaired.note_num() == 0:
        where = "repair" if f.repairs else "read"
        f.result = FileResult(f.index, f.path, SKIPPED, where, "no notes", f.repairs)


def _preprocess(f: _File, config: PreprocessConfig) -> None:
    f.score = preprocess(f.repaired, config)
    f.arrays = f.repaired_arrays if f.score is f.repaired else score_arrays(f.score)
    if f.score.note_num() == 0:
        f.result = FileResult(f.index, f.path, SKIPPED, "preprocess", "no notes left", f.repairs)


def _batches(ready: list[_File]) -> Iterator[list[_File]]:
    """Consecutive groups of up to ``BATCH_NOTES`` notes (a larger file goes alone)."""
    batch, notes = [], 0
    for f in ready:
        count = f.score.note_num()
        if batch and notes + count > BATCH_NOTES:
            yield batch
            batch, notes = [], 0
        batch.append(f)
        notes += count
    if batch:
        yield batch


def _finish(
    batch: list[_File],
    tokenizer: Tokenizer,
    options: IngestOptions,
    table: NoteTable | None = None,
) -> None:
    """Content hash, metadata and token ids of every file in ``batch``, at once (``table``:
    the batch's notes, if the caller has them)."""
    if options.hook is not None:
        for f in batch:
            if "encode" not in f.entered:
                options.hook("encode", f.path)
    if table is None:
        table = note_table([f.score for f in batch], [f.arrays for f in batch])
    if any(f.score is not f.repaired for f in batch):  # the hash covers the repaired notes
        hashed = note_table([f.repaired for f in batch], [f.repaired_arrays for f in batch])
    else:
        hashed = table
    digests = content_digests(hashed)
    metas = pieces_metadata(table, [f.path for f in batch])
    ids = encode_many(table, tokenizer.vocab)
    for f, digest, meta, piece_ids in zip(batch, digests, metas, ids, strict=True):
        f.result = FileResult(f.index, f.path, USED, None, None, f.repairs, f.score.note_num(),
                              digest, ids=piece_ids, meta=meta)  # fmt: skip


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
