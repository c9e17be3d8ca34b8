"""The ONNX backend: an exported decoder (:mod:`aurl.export.onnx`) run by onnxruntime, shaped
so that the step :class:`~aurl.generate.engine.Engine` drives it as it drives a Transformer.

:class:`OnnxDecoder` is called like ``Transformer.forward`` (ids in, torch float logits out,
with or without a cache) and makes caches (:class:`OnnxCache`) that keep every layer's keys
and values as numpy arrays (L, B, H, slots, D) with each row's position and the position held
in each slot, like :class:`~aurl.models.KVCache`, and take the same row operations
(``select``, ``extend``, ``put``). A token at position ``p`` goes to slot ``p % size``. The
arrays grow by :data:`GROW` slots as the rows advance, and the step graph attends over all of
them (the unused ones masked): each layer's slice is passed as it lies, never copied, at the
cost of attending over up to ``GROW - 1`` empty slots.

Which folder ``load_onnx`` reads: the folder given if it holds ``onnx.json`` (an export),
else its ``onnx/`` subfolder (a model folder with its export inside it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from aurl.errors import ModelLoadError
from aurl.export.locate import META
from aurl.export.onnx import prefill_mask, session, step_names
from aurl.models import ModelFolder, model_config
from aurl.models.folder import CONFIG
from aurl.tokens import Tokenizer

GROW = 64  # slots the cache's arrays grow by


def _np(x) -> np.ndarray:
    """A tensor, list or array as a numpy array (int64 for indices and ids)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class OnnxCache:
    """Keys and values of ``batch`` rows for up to ``size`` positions each, (L, B, H, slots,
    D) float32 with ``slots`` <= ``size`` growing on demand; ``pos`` (B,) the tokens each row
    has seen, ``slot_pos`` (B, size) the position each slot holds (-1: none)."""

    def __init__(self, n_layer: int, batch: int, n_head: int, size: int, head_dim: int):
        self.size = size
        self.k = np.zeros((n_layer, batch, n_head, 0, head_dim), np.float32)
        self.v = np.zeros_like(self.k)
        self.pos = np.zeros(batch, np.int64)
        self.slot_pos = np.full((batch, size), -1, np.int64)
        self._seen: np.ndarray | None = None  # the step mask (B, slots + 1), kept by write

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def slots(self) -> int:
        return self.k.shape[3]

    @property
    def empty(self) -> bool:
        return not bool((self.pos > 0).any())

    def reserve(self, slots: int) -> None:
        """Grow the arrays to hold at least ``slots`` slots (by :data:`GROW`, at most size)."""
        if slots <= self.slots:
            return
        new = min(self.size, -(-slots // GROW) * GROW)
        pad = [(0, 0)] * 3 + [(0, new - self.slots), (0, 0)]
        self.k, self.v = np.pad(self.k, pad), np.pad(self.v, pad)
        self._seen = None

    def select(self, index) -> None:
        """Keep (or repeat, or reorder) rows: row i becomes old row ``index[i]``."""
        index = _np(index)
        self.k, self.v = self.k[:, index], self.v[:, index]
        self.pos, self.slot_pos = self.pos[index], self.slot_pos[index]
        self._seen = None

    def unwind(self, rows) -> None:
        """Rows ``rows`` forget the last token they took (see ``KVCache.unwind``)."""
        rows = _np(rows)
        self.pos[rows] -= 1
        self.slot_pos[rows, self.pos[rows] % self.size] = -1
        self._seen = None

    def extend(self, other: OnnxCache) -> None:
        """Append the rows of ``other`` (a cache of the same model)."""
        self._match(other)
        self.k = np.concatenate([self.k, other.k], 1)
        self.v = np.concatenate([self.v, other.v], 1)
        self.pos = np.concatenate([self.pos, other.pos])
        self.slot_pos = np.concatenate([self.slot_pos, other.slot_pos])
        self._seen = None

    def put(self, rows, other: OnnxCache) -> None:
        """Replace rows ``rows`` with the rows of ``other`` (a cache of the same model). Only
        ``other``'s slots are copied: the rows' slots past them hold stale values that their
        ``slot_pos`` (-1) masks."""
        rows = _np(rows)
        self._check(other)
        self.reserve(other.slots)
        n = other.slots
        self.k[:, rows, :, :n], self.v[:, rows, :, :n] = other.k, other.v
        self.pos[rows], self.slot_pos[rows] = other.pos, other.slot_pos
        self._seen = None

    def _check(self, other: OnnxCache) -> None:
        if other.size != self.size:
            raise ValueError(f"caches of {self.size} and {other.size} slots cannot share rows")

    def _match(self, other: OnnxCache) -> None:
        """Give both caches the same number of slots (the unused ones are masked)."""
        self._check(other)
        self.reserve(other.slots)
        other.reserve(self.slots)

    def fill(self, keys: np.ndarray, values: np.ndarray, lengths: np.ndarray) -> None:
        """Take a prefill's keys and values (L, B, H, T, D) into this empty cache: row b's
        first ``lengths[b]`` tokens at positions 0 onwards."""
        T = keys.shape[3]
        self.reserve(T)
        self.k[:, :, :, :T], self.v[:, :, :, :T] = keys, values
        self.slot_pos[:, :T] = np.where(np.arange(T) < lengths[:, None], np.arange(T), -1)
        self.pos = lengths.astype(np.int64)
        self._seen = None

    def step_mask(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's slot for its next token, and the step graph's mask (B, 1, 1, slots + 1)
        of the slots it sees (not the one it overwrites) and itself."""
        slots = self.pos % self.size
        self.reserve(int(slots.max()) + 1)
        if self._seen is None:  # made again after a row operation; write keeps it after a step
            self._seen = np.ones((self.batch, self.slots + 1), bool)
            self._seen[:, :-1] = self.slot_pos[:, : self.slots] >= 0
        self._seen[np.arange(self.batch), slots] = False
        return slots, self._seen[:, None, None]

    def write(self, new_k: np.ndarray, new_v: np.ndarray, slots: np.ndarray) -> None:
        """Store one token per row (L, B, H, 1, D) at ``slots`` and advance every row."""
        rows = np.arange(self.batch)
        self.k[:, rows, :, slots] = new_k[:, :, :, 0].transpose(1, 0, 2, 3)
        self.v[:, rows, :, slots] = new_v[:, :, :, 0].transpose(1, 0, 2, 3)
        self.slot_pos[rows, slots] = self.pos
        self.pos = self.pos + 1
        if self._seen is not None:
            self._seen[rows, slots] = True


class OnnxDecoder:
    """An exported decoder that the Engine drives like a Transformer (CPU only).

    With two threads or more, the step graph's threads spin between its operations instead
    of sleeping (twice as fast a step at batch 16); torch's own work between two steps (the
    masks and the draw) should then run on one thread, as :func:`aurl.api.load` sets it, or
    the two pools take turns on the same cores.

    Args:
        folder: an ONNX folder written by :func:`aurl.export.onnx.export_onnx`.
        threads: onnxruntime's intra-op threads (default: torch's thread count).
    """

    def __init__(self, folder: str | Path, threads: int | None = None):
        folder = Path(folder)
        meta = json.loads((folder / META).read_text())
        saved = json.loads((folder / CONFIG).read_text())
        self.config = model_config({**saved["model"], "arch": saved.get("arch")})
        self.int8 = bool(meta.get("int8"))
        self.device = torch.device("cpu")
        threads = threads or torch.get_num_threads()
        self.prefill_session = session(folder / meta["prefill"], threads)
        self.step_session = session(folder / meta["step"], threads, spin=threads > 1)
        self._names = step_names(self.config.n_layer)

    def eval(self) -> OnnxDecoder:
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        """One empty CPU tensor: where callers look for a model's device."""
        yield torch.empty(0)

    def new_cache(self, batch: int, max_len: int | None = None) -> OnnxCache:
        """A cache for ``batch`` rows of up to ``max_len`` tokens (default and at most the
        context)."""
        cfg = self.config
        size = min(max_len or cfg.max_seq_len, cfg.max_seq_len)
        return OnnxCache(cfg.n_layer, batch, cfg.n_head, size, cfg.n_embd // cfg.n_head)

    def __call__(self, idx: torch.Tensor, cache: OnnxCache | None = None, last_only: bool = False,
                 lengths: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:  # fmt: skip
        """Logits (B, T, V), or (B, 1, V) of each row's last real token with ``last_only``,
        as ``Transformer.forward`` gives them: without a cache the tokens sit at ``start``
        onwards; with one they follow what each row holds (a prefill into an empty cache,
        with ``lengths`` for right-padded rows, or any number of tokens per row after it)."""
        ids = _np(idx).astype(np.int64)
        B, T = ids.shape
        real = np.full(B, T, np.int64) if lengths is None else _np(lengths).astype(np.int64)
        if cache is not None and not cache.empty:
            if lengths is not None:
                raise ValueError("the ONNX backend takes padded rows only into an empty cache")
            logits = np.stack([self._step(ids[:, t : t + 1], cache) for t in range(T)], 1)
            return torch.from_numpy(logits[:, -1:] if last_only else logits)
        if cache is not None and cache.size < T:
            raise ValueError(f"{T} tokens do not fit a cache of {cache.size}")
        if start + T > self.config.max_seq_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds max_seq_len "
                             f"{self.config.max_seq_len}")  # fmt: skip
        first = 0 if cache is not None else start  # an empty cache's rows start at 0
        positions = np.broadcast_to(first + np.arange(T), (B, T)).copy()
        mask = prefill_mask(torch.from_numpy(real), T).numpy()
        logits, keys, values = self.prefill_session.run(
            None, {"ids": ids, "positions": positions, "mask": mask}
        )
        if cache is not None:
            cache.fill(keys, values, real)
        if last_only:
            logits = logits[np.arange(B), real - 1][:, None]
        return torch.from_numpy(logits)

    def _step(self, ids: np.ndarray, cache: OnnxCache) -> np.ndarray:
        """Logits (B, V) of one token per row (B, 1) after what ``cache`` holds; the cache
        takes the token in."""
        slots, mask = cache.step_mask()
        # A finished row goes on taking PAD past the context: keep its position in the tables.
        positions = np.minimum(cache.pos, self.config.max_seq_len - 1)[:, None]
        past = [*cache.k, *cache.v]  # each layer's (B, H, slots, D): contiguous views
        feed = dict(zip(self._names, [ids, positions, mask, *past], strict=True))
        logits, new_k, new_v = self.step_session.run(None, feed)
        cache.write(new_k, new_v, slots)
        return logits


def onnx_folder(path: str | Path) -> Path:
    """The ONNX export for ``path``: the folder itself if it holds ``onnx.json``, else its
    ``onnx/`` subfolder."""
    path = Path(path)
    return path if (path / META).is_file() else path / "onnx"


def load_onnx(path: str | Path, threads: int | None = None) -> ModelFolder:
    """Load the ONNX export for ``path`` (see :func:`onnx_folder`) as a model folder whose
    model is an :class:`OnnxDecoder`.

    Raises:
        ModelLoadError: no export there, a broken one, or onnxruntime is not installed.
    """
    folder = onnx_folder(path)
    if not (folder / META).is_file() or not (folder / CONFIG).is_file():
        raise ModelLoadError(f"{path}: no ONNX export (no {META} there or in its onnx/ "
                             "folder); write one with `aurl export MODEL --onnx DIR`")  # fmt: skip
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ModelLoadError("the ONNX backend needs onnxruntime: pip install -e '.[onnx]'") from e
    try:
        saved = json.loads((folder / CONFIG).read_text())
        tokenizer = Tokenizer.from_dict(saved["tokenizer"])
        model = OnnxDecoder(folder, threads)
    except Exception as e:  # corrupt JSON, missing or broken graphs
        raise ModelLoadError(f"{folder}: cannot load the ONNX export "
                             f"({type(e).__name__}: {e})") from e  # fmt: skip
    meta = saved.get("meta")
    if meta is None:  # a folder written before metadata had its own key
        meta = {k: v for k, v in saved.items() if k not in ("format", "arch", "model", "tokenizer")}
    return ModelFolder(model, tokenizer, meta, folder)
