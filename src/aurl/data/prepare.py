"""Build a tokenized dataset from a corpus source, cached by fingerprint.

Files are read and encoded in worker processes (one bad file is reported and skipped; it can
never take the run down), then appended to per-split shards as they arrive. The dataset
folder is ``<cache>/datasets/<fingerprint>/`` and is written atomically, so an interrupted
run leaves nothing half-built and a second run with the same inputs returns at once.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from aurl.data.shards import ShardWriter
from aurl.data.sources import Source
from aurl.data.split import SPLITS, split_of
from aurl.fileio import atomic_dir
from aurl.paths import cache_dir
from aurl.tokens import Tokenizer, TokenizerConfig

PREPARE_VERSION = 1
MANIFEST = "manifest.json"


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


def fingerprint(source: Source, tokenizer: Tokenizer) -> str:
    """Hash of every file's identity and content plus the tokenizer config."""
    h = hashlib.sha256(f"aurl-prepare/{PREPARE_VERSION}\n{tokenizer.fingerprint()}\n".encode())
    for path in source.files:
        h.update(source.identity(path).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:20]


_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer_config: dict) -> None:
    global _worker_tokenizer
    _worker_tokenizer = Tokenizer(TokenizerConfig.model_validate(tokenizer_config))


def _encode_file(job: tuple[int, str]):
    """Worker: read and encode one file; never raises."""
    from aurl.midi import MidiError, read_midi

    index, path = job
    try:
        score = read_midi(path)
        ids = _worker_tokenizer.encode(score)
        return index, ids, score.note_num(), None
    except MidiError as e:
        return index, None, 0, e.reason
    except Exception as e:  # a bug or a pathological file: report it, keep going
        return index, None, 0, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def prepare(
    source: Source,
    tokenizer: Tokenizer | None = None,
    workers: int = 2,
    progress: bool = True,
    root: Path | None = None,
) -> Dataset:
    """Tokenize ``source`` into train/val/test shards, or return the cached dataset."""
    tokenizer = tokenizer or Tokenizer()
    key = fingerprint(source, tokenizer)
    folder = (root or cache_dir() / "datasets") / key
    if (folder / MANIFEST).is_file():
        return Dataset(folder, json.loads((folder / MANIFEST).read_text()), cached=True)

    files = [str(p) for p in source.files]
    skipped = [{"file": name, "reason": reason} for name, reason in source.skipped]
    counts = {s: Counter(pieces=0, notes=0, tokens=0) for s in SPLITS}
    with atomic_dir(folder) as tmp:
        writers = {s: ShardWriter(tmp / s, tokenizer.vocab) for s in SPLITS}
        pieces = {s: [] for s in SPLITS}
        results = _run(files, tokenizer, workers)
        bar = tqdm(results, total=len(files), desc="prepare", unit="file", disable=not progress)
        for index, ids, notes, reason in _in_order(bar):
            path = source.files[index]
            if ids is None:
                skipped.append({"file": str(path), "reason": reason})
                continue
            identity = source.identity(path)
            split = split_of(identity)
            writers[split].add(ids)
            pieces[split].append(identity)
            counts[split].update(pieces=1, notes=notes, tokens=len(ids))
        for w in writers.values():
            w.close()
        manifest = {
            "format": f"aurl-dataset/{PREPARE_VERSION}",
            "fingerprint": key,
            "source": {"label": source.label, "root": str(source.root), "files": len(files)},
            "tokenizer": tokenizer.to_dict(),
            "splits": {s: dict(counts[s]) | {"identities": pieces[s]} for s in SPLITS},
            "skipped": skipped,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return Dataset(folder, manifest, cached=False)


def _run(files: list[str], tokenizer: Tokenizer, workers: int):
    jobs = list(enumerate(files))
    if workers <= 1 or len(files) < 8:
        _init_worker(tokenizer.to_dict())
        yield from map(_encode_file, jobs)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer.to_dict(),)) as pool:
        yield from pool.imap_unordered(_encode_file, jobs, chunksize=4)


def _in_order(results):
    """Re-order worker results by file index so shards do not depend on scheduling."""
    pending, expected = {}, 0
    for item in results:
        pending[item[0]] = item
        while expected in pending:
            yield pending.pop(expected)
            expected += 1
    yield from (pending[k] for k in sorted(pending))


def summary(dataset: Dataset) -> str:
    """A few lines for the terminal: files read and skipped, notes, tokens, split sizes."""
    m = dataset.manifest
    splits = m["splits"]
    read = sum(splits[s].get("pieces", 0) for s in SPLITS)
    lines = [
        f"dataset {m['fingerprint']} at {dataset.path}" + (" (cached)" if dataset.cached else ""),
        f"source {m['source']['label']}: {read} files read, {len(m['skipped'])} skipped",
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
    reasons = Counter(item["reason"] for item in m["skipped"])
    lines += [f"  skipped {n}: {reason}" for reason, n in reasons.most_common(10)]
    return "\n".join(lines)
