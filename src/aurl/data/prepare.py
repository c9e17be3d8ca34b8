"""Build a tokenized dataset from a corpus source, cached by fingerprint.

Files are read, repaired and encoded in worker processes (:mod:`aurl.data.ingest`: one bad
file is reported and skipped; it can never take the run down), then appended in file order to
per-split shards, and every file gets a line in the dataset's report. The dataset
folder is ``<cache>/datasets/<fingerprint>/`` and is written atomically, so an interrupted
run leaves nothing half-built and a second run with the same inputs returns at once.

The cache is content-addressed and incremental: each file's outcome is kept under the hash
of its bytes and of the settings (:mod:`aurl.data.piece_cache`), so adding files to a
folder processes only the new ones, and changing a setting processes everything again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from aurl.data.controls import LABELS_VERSION
from aurl.data.ingest import is_transient, mark_duplicates, process_files
from aurl.data.piece_cache import CachedPiece, PieceCache, cache_entries, file_digest
from aurl.data.pipeline import (
    DEFAULT_TIMEOUT_S,
    DUPLICATE,
    SKIPPED,
    USED,
    FileResult,
    IngestOptions,
)
from aurl.data.preprocess import PreprocessConfig
from aurl.data.shards import ShardWriter
from aurl.data.sources import Source, SourceError
from aurl.data.split import SPLITS, split_of
from aurl.fileio import atomic_dir
from aurl.paths import cache_dir
from aurl.tokens import Tokenizer

PREPARE_VERSION = 4  # 4: content hash of notes as a multiset
MANIFEST = "manifest.json"
REPORT = "report.jsonl"
PIECES = ".pieces"  # the piece cache, inside the datasets folder
# Tokenizer settings that shape training windows, not the shards: left out of the cache key.
WINDOW_TIME = ("infill_context",)
METADATA = "metadata.jsonl"  # in each split folder: one line per piece, in shard order


@dataclass
class Dataset:
    """A prepared dataset folder and its manifest (summary, splits, configs)."""

    path: Path
    manifest: dict
    cached: bool = False

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_dict(self.manifest["tokenizer"])

    def split(self, name: str) -> Path:
        return self.path / name


def fingerprint(identities: list[str], digests: list[str], settings: dict) -> str:
    """Hash of every file's identity and content digest, and the settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode() + b"\n")
    for identity, digest in zip(identities, digests, strict=True):
        h.update(identity.encode() + b"\0" + digest.encode())
    return h.hexdigest()[:20]


def _from_cache(index: int, file: str, piece: CachedPiece) -> FileResult:
    info = piece.info
    meta = info.get("meta")
    if meta is not None:
        meta = {**meta, "source": file}  # the same content may sit at another path
    return FileResult(index, file, info["status"], info.get("stage"), info.get("reason"),
                      info.get("repairs", []), info.get("notes", 0), info.get("digest"),
                      ids=piece.ids, meta=meta)  # fmt: skip


def _to_cache(result: FileResult) -> CachedPiece:
    status = SKIPPED if result.status == SKIPPED else USED  # duplicates depend on the corpus
    ids = result.ids if status == USED else None
    info = {"status": status, "stage": result.stage if status == SKIPPED else None,
            "reason": result.reason if status == SKIPPED else None, "repairs": result.repairs,
            "notes": result.notes, "digest": result.digest, "meta": result.meta}  # fmt: skip
    return CachedPiece(ids, info)


def _results(files, digests, cache, tokenizer, workers, options, processed):
    """Every file's result in file order: from the piece cache, or from the workers (and then
    stored). ``processed`` collects the indices that had to be processed.

    Cached pieces are read one at a time as they are needed, and new entries are stored as
    they come (committed in batches).
    """
    cached = [cache.has(d) for d in digests]
    todo = [i for i, hit in enumerate(cached) if not hit]
    processed.extend(todo)
    fresh = process_files([files[i] for i in todo], tokenizer, workers, options)
    for i, file in enumerate(files):
        hit = cache.get(digests[i]) if cached[i] else None
        if hit is not None:
            yield _from_cache(i, file, hit)
            continue
        result = next(fresh) if not cached[i] else _reprocess(files[i], tokenizer, options)
        result.index = i
        if not is_transient(result):
            cache.put(digests[i], _to_cache(result))
        yield result


def _reprocess(file: str, tokenizer: Tokenizer, options: IngestOptions) -> FileResult:
    """A cache entry that vanished or was damaged since the lookup: process it here."""
    return next(process_files([file], tokenizer, 1, options))


def prepare_settings(
    tokenizer: Tokenizer, preprocessing: PreprocessConfig, strict: bool, scan_all: bool
) -> dict:
    """Everything besides the files that shapes prepared data: the cache is keyed by it. With
    controls, the version of the analysis that labels them too."""
    shaping = {k: v for k, v in tokenizer.to_dict().items() if k not in WINDOW_TIME}
    settings = {"version": PREPARE_VERSION, "tokenizer": shaping,
                "strict": strict, "scan_all": scan_all,
                "preprocess": preprocessing.model_dump(mode="json")}  # fmt: skip
    if tokenizer.config.controls:
        settings["labels"] = LABELS_VERSION
    return settings


def prepare(
    source: Source,
    tokenizer: Tokenizer | None = None,
    workers: int = 2,
    progress: bool = True,
    root: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    strict: bool = False,
    scan_all: bool = False,
    hook: Callable[[str, str], None] | None = None,
    preprocessing: PreprocessConfig | None = None,
) -> Dataset:
    """Tokenize ``source`` into train/val/test shards, or return the cached dataset.

    Files are read, repaired and encoded in worker processes (see :mod:`aurl.data.ingest`);
    a file that fails, crashes its worker or runs out of time is reported and skipped. The
    dataset folder holds ``report.jsonl``, one line per file (file, status, stage, reason,
    repairs, duplicate_of), and the manifest's ``report`` section counts them.

    Args:
        source: The corpus.
        tokenizer: Encodes the pieces (default config if None).
        workers: Worker processes (0: in this process, unprotected; for debugging).
        progress: Show a progress bar.
        root: Folder of prepared datasets (default: the user cache).
        timeout: Seconds one file may take before its worker is replaced.
        strict: Skip files that need any repair instead of repairing them.
        scan_all: Look for notes never closed in every file (slower; see IngestOptions).
        hook: Fault-injection hook run in the workers (see IngestOptions); for tests.
        preprocessing: Steps applied to every piece before encoding (part of the key).

    Returns:
        The prepared (or cached) dataset.
    """
    tokenizer = tokenizer or Tokenizer()
    preprocessing = preprocessing or PreprocessConfig()
    options = IngestOptions(timeout=timeout, strict=strict, scan_all=scan_all, hook=hook,
                            preprocess=preprocessing)  # fmt: skip
    settings = prepare_settings(tokenizer, preprocessing, strict, scan_all)
    digests = [file_digest(p) for p in source.files]
    identities = source.identities()
    key = fingerprint(identities, digests, settings)
    root = root or cache_dir() / "datasets"
    folder = root / key
    if (folder / MANIFEST).is_file():
        return _usable(source, Dataset(folder, json.loads((folder / MANIFEST).read_text()), True))

    files = [str(p) for p in source.files]
    processed: list[int] = []
    counts = {s: Counter(pieces=0, notes=0, tokens=0) for s in SPLITS}
    report = ReportCounts()
    with (
        PieceCache(root / PIECES, settings) as cache,
        atomic_dir(folder) as tmp,
        open(tmp / REPORT, "w") as lines,
    ):
        for name, reason in source.skipped:
            result = FileResult(-1, str(name), SKIPPED, "source", reason)
            lines.write(json.dumps(report.add(result)) + "\n")
        writers = {s: ShardWriter(tmp / s, tokenizer.vocab) for s in SPLITS}
        metadata = {s: open(tmp / s / METADATA, "w") for s in SPLITS}  # noqa: SIM115
        pieces = {s: [] for s in SPLITS}
        results = mark_duplicates(_results(files, digests, cache, tokenizer, workers, options,
                                           processed))  # fmt: skip
        bar = tqdm(results, total=len(files), desc="prepare", unit="file", disable=not progress)
        for result in bar:
            lines.write(json.dumps(report.add(result)) + "\n")
            if result.status != USED:
                continue
            identity = identities[result.index]
            split = split_of(identity)
            writers[split].add(result.ids)
            metadata[split].write(json.dumps({"identity": identity, **(result.meta or {})}) + "\n")
            pieces[split].append(identity)
            counts[split].update(pieces=1, notes=result.notes, tokens=len(result.ids))
        for w in writers.values():
            w.close()
        for f in metadata.values():
            f.close()
        manifest = {
            "format": f"aurl-dataset/{PREPARE_VERSION}",
            "fingerprint": key,
            "source": {"label": source.label, "root": str(source.root), "files": len(files)},
            "tokenizer": tokenizer.to_dict(),
            "options": {
                "strict": strict,
                "scan_all": scan_all,
                "timeout": timeout,
                "preprocess": preprocessing.model_dump(mode="json"),
            },  # fmt: skip
            "processed": len(processed),  # files encoded in this run; the rest were cached
            "splits": {s: dict(counts[s]) | {"identities": pieces[s]} for s in SPLITS},
            "skipped": report.skipped,
            "as_written": [{"file": str(path), "note": note} for path, note in source.as_written],
            "report": report.summary(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return _usable(source, Dataset(folder, manifest, cached=False))


def _usable(source: Source, dataset: Dataset) -> Dataset:
    """``dataset`` if any piece made it in; else a SourceError naming the source and why."""
    if any(dataset.manifest["splits"][s].get("tokens", 0) for s in SPLITS):
        return dataset
    skipped = dataset.manifest["report"]["skipped_by_reason"]
    why = f"; most often: {next(iter(skipped))}" if skipped else ""
    raise SourceError(
        f"{source.label}: no usable MIDI among {len(source.files)} files{why} "
        f"(see {dataset.path / REPORT})"
    )


class ReportCounts:
    """Running counts over the per-file records: used, repaired (by repair), skipped (by
    stage and reason) and duplicates (each with the file it repeats)."""

    def __init__(self) -> None:
        self.files = self.used = self.repaired = 0
        self.repairs: Counter[str] = Counter()
        self.skipped: list[dict] = []
        self.duplicates: list[dict] = []

    def add(self, result: FileResult) -> dict:
        """Count one file's result and return its report record."""
        record = result.record()
        self.files += 1
        if result.status == USED:
            self.used += 1
            self.repaired += bool(result.repairs)
            self.repairs.update(result.repairs)
        elif result.status == DUPLICATE:
            self.duplicates.append({"file": result.file, "duplicate_of": result.duplicate_of})
        else:
            self.skipped.append({"file": result.file, "stage": result.stage,
                                 "reason": result.reason})  # fmt: skip
        return record

    def summary(self) -> dict:
        return {
            "files": self.files,
            "used": self.used,
            "repaired": self.repaired,
            "repairs": dict(self.repairs.most_common()),
            "skipped": len(self.skipped),
            "skipped_by_stage": dict(Counter(s["stage"] for s in self.skipped).most_common()),
            "skipped_by_reason": dict(Counter(s["reason"] for s in self.skipped).most_common()),
            "duplicates": len(self.duplicates),
            "duplicate_of": {d["file"]: d["duplicate_of"] for d in self.duplicates},
        }


def summary(dataset: Dataset) -> str:
    """A few lines for the terminal: files read, repaired (by repair), skipped (by reason) and
    duplicated, then notes, tokens and split sizes."""
    m = dataset.manifest
    splits = m["splits"]
    read = sum(splits[s].get("pieces", 0) for s in SPLITS)
    report = m.get("report", {})
    lines = [
        f"dataset {m['fingerprint']} at {dataset.path}" + (" (cached)" if dataset.cached else ""),
        f"source {m['source']['label']}: {read} files read ({report.get('repaired', 0)} "
        f"repaired), {len(m['skipped'])} skipped, {report.get('duplicates', 0)} duplicates",
        "notes {:,}, tokens {:,}".format(
            sum(splits[s].get("notes", 0) for s in SPLITS),
            sum(splits[s].get("tokens", 0) for s in SPLITS),
        ),
        "splits: "
        + ", ".join(
            f"{s} {splits[s].get('pieces', 0)} pieces / {splits[s].get('tokens', 0):,} tokens"
            for s in SPLITS
        ),
    ]
    lines += [f"  repaired {n}: {name}" for name, n in report.get("repairs", {}).items()]
    notes = Counter(item["note"] for item in m.get("as_written", []))
    lines += [f"  converted as notated {n}: {note}" for note, n in notes.most_common()]
    reasons = Counter((item.get("stage"), item["reason"]) for item in m["skipped"]).most_common(10)
    lines += [
        f"  skipped {n}: {reason}" + (f" ({stage})" if stage else "")
        for (stage, reason), n in reasons
    ]
    more = len(Counter((item.get("stage"), item["reason"]) for item in m["skipped"])) - 10
    if more > 0:
        lines.append(f"  ... {more} other reasons (see {REPORT})")
    return "\n".join(lines)


def cache_status(root: Path | None = None) -> str:
    """What the cache holds: each prepared dataset (newest first) and the piece entries."""
    root = root or cache_dir() / "datasets"
    rows = []
    for manifest_path in root.glob("*/" + MANIFEST):
        m = json.loads(manifest_path.read_text())
        splits = m["splits"]
        tokens = sum(splits[s].get("tokens", 0) for s in SPLITS)
        pieces = sum(splits[s].get("pieces", 0) for s in SPLITS)
        size = sum(f.stat().st_size for f in manifest_path.parent.rglob("*") if f.is_file())
        rows.append((manifest_path.stat().st_mtime, m, pieces, tokens, size))
    lines = [f"datasets in {root}: {len(rows)}"]
    for _, m, pieces, tokens, size in sorted(rows, key=lambda r: -r[0]):
        src = m["source"]
        lines.append(f"  {m['fingerprint']}  {src['label']} ({src['files']} files at {src['root']}): "
                     f"{pieces} pieces, {tokens:,} tokens, {size / 2**20:.1f} MiB")  # fmt: skip
    for name, n in cache_entries(root / PIECES):
        lines.append(f"piece cache {name}: {n} encoded files")
    # Earlier versions kept one file per piece in a folder per settings; nothing reads them.
    old = [p for p in (root / PIECES).glob("*") if p.is_dir()]
    if old:
        size = sum(f.stat().st_size for p in old for f in p.rglob("*") if f.is_file())
        lines.append(f"{len(old)} piece folders of an older format in {root / PIECES}, "
                     f"{size / 2**20:.1f} MiB: unused, safe to delete")  # fmt: skip
    return "\n".join(lines)
