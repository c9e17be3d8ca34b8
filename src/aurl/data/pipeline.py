"""What happens to each MIDI file: read, repair, preprocess, then hash, describe, encode.

A file goes through the stages in ``STAGES`` and never raises: a file that cannot be used
comes back SKIPPED with its stage and a one-line reason. :func:`process_chunk` takes many
files at once: each is read on its own, all are checked for what may need repair in one
pass, each is repaired and preprocessed on its own, and the files left are hashed,
described and encoded in one vectorized batch (for small files numpy's overhead per call,
not the notes, is most of the cost). :mod:`aurl.data.ingest` runs chunks in worker
processes that one bad file cannot stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import symusic

from aurl.data.controls import with_controls
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
BATCH_NOTES = 50_000  # files are hashed, described and encoded together up to this many notes
BATCH = -1  # the position reported to ``on_stage`` while a batch step runs


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
    if tokenizer.vocab.has_controls:
        ids = [with_controls(piece_ids, tokenizer.vocab) for piece_ids in ids]
    for f, digest, meta, piece_ids in zip(batch, digests, metas, ids, strict=True):
        f.result = FileResult(f.index, f.path, USED, None, None, f.repairs, f.score.note_num(),
                              digest, ids=piece_ids, meta=meta)  # fmt: skip


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
