"""ONNX export of the decoder as two graphs over an explicit KV cache, optionally INT8.

The **prefill** graph takes right-padded rows, ``ids`` and ``positions`` (B, T) int64 and a
``mask`` (B, 1, T, T) bool of the keys each query may see, and returns the ``logits`` of every
position (B, T, V) and the rotated ``keys``/``values`` of the T tokens, (L, B, H, T, D). The
**step** graph takes one token per row, ``ids``/``positions`` (B, 1), a ``mask`` (B, 1, 1,
S + 1) over the S cached slots and the new token itself (last), and the cache as one input
per layer, ``past_k_0 .. past_k_{L-1}`` then ``past_v_0 ..`` (B, H, S, D) each; it returns
``logits`` (B, V) and the new token's ``new_k``/``new_v`` (L, B, H, 1, D). B, T and S are
dynamic. The caller keeps the cache as (L, B, H, S, D) arrays and passes each layer's slice,
which is contiguous and so costs no copy; a stacked (L, B, H, S, D) input made onnxruntime
copy every layer's past out of it at every step (a Gather), which measured twice as slow at
batch 16 over 256 cached tokens (10.7 against 5.5 ms a step, one thread). The graphs stay
pure functions: the cache lives in :mod:`aurl.generate.onnx_backend`.

Both graphs are traced from :class:`DecoderTwin`, a small pure-torch copy of
:class:`~aurl.models.Transformer`'s inference math on its weights, checked against
``Transformer.forward`` (cached and uncached) before anything is written. The step graph
attends over the past and the new key separately, so the cache is never concatenated (copied)
inside the graph. Only the plain decoder is supported: no sliding window, musical positions or
bar summaries.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from aurl.export.locate import META, weights_sha256
from aurl.fileio import atomic_dir
from aurl.models import Transformer, load_model
from aurl.models.folder import CONFIG
from aurl.models.transformer import apply_rope, rope_tables

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

FORMAT = "aurl-onnx/2"  # 2: the lean step graph, opset 20 (same inputs and outputs as 1)
PREFILL, STEP = "prefill.onnx", "step.onnx"
OPSET = 20  # 20: GELU is one node (Gelu, approximate="tanh"), 5% of a batch-1 step
TOLERANCE = 1e-4  # the largest logit difference the twin may show against the model


def check_supported(model: nn.Module) -> None:
    """Refuse what the graphs do not compute.

    Raises:
        ValueError: not a decoder, or a decoder with ``window``, ``musical_positions`` or
            ``bar_summaries``.
    """
    cfg = getattr(model, "config", None)
    if not isinstance(model, Transformer):
        arch = getattr(cfg, "arch", type(model).__name__)
        raise ValueError(f"ONNX export supports the plain decoder only, not arch {arch!r}")
    for option in ("window", "musical_positions", "bar_summaries"):
        if getattr(cfg, option):
            raise ValueError(f"ONNX export does not support the model option {option} "
                             f"(= {getattr(cfg, option)}); export a plain decoder")  # fmt: skip


class DecoderTwin(nn.Module):
    """The decoder's inference math in plain torch ops, on a loaded Transformer's weights
    (shared, not copied): embedding, pre-norm blocks with RoPE attention and a GELU MLP, the
    final norm and the tied head. Attention is written out (scores, mask, softmax) so that
    both graphs export to basic ONNX ops."""

    def __init__(self, model: Transformer):
        super().__init__()
        check_supported(model)
        cfg = model.config
        self.model = model
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.scale = self.head_dim**-0.5
        cos, sin = rope_tables(self.head_dim, cfg.max_seq_len, cfg.rope_base)
        self.register_buffer("cos", cos, persistent=False)  # (max_seq_len, D)
        self.register_buffer("sin", sin, persistent=False)
        # the step's rotate-half as one gather: x[..., swap] * signed_sin (see _step_qkv)
        half = self.head_dim // 2
        self.register_buffer("swap", torch.cat([torch.arange(half, self.head_dim),
                                                torch.arange(half)]), persistent=False)  # fmt: skip
        sign = torch.cat([-torch.ones(half), torch.ones(half)])
        self.register_buffer("signed_sin", sin * sign, persistent=False)

    def _norm(self, norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, norm.normalized_shape, norm.weight, None, norm.eps)

    def _qkv(self, block, x: torch.Tensor, positions: torch.Tensor):
        """Rotated queries and keys and the values of ``x`` (B, T, C): (B, H, T, D) each."""
        qkv = F.linear(self._norm(block.norm1, x), block.attn.qkv.weight)
        qkv = qkv.unflatten(-1, (3, self.n_head, self.head_dim))  # (B, T, 3, H, D)
        cos = self.cos[positions][:, :, None, None, :]  # (B, T, 1, 1, D)
        sin = self.sin[positions][:, :, None, None, :]
        q, k = (t.transpose(1, 2) for t in apply_rope(qkv[:, :, :2], cos, sin).unbind(2))
        return q, k, qkv[:, :, 2].transpose(1, 2)

    def _rest(self, block, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The block after attention: output projection, residual, MLP. ``y`` (B, H, T, D)."""
        return self._rest_joined(block, x, y.transpose(1, 2).flatten(2))

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self._norm(self.model.norm, x), self.model.embed.weight)

    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Logits (B, T, V) and keys, values (L, B, H, T, D) of right-padded rows."""
        x = F.embedding(ids, self.model.embed.weight)  # (B, T, C)
        keys, values = [], []
        for block in self.model.blocks:
            q, k, v = self._qkv(block, x, positions)
            scores = (q @ k.transpose(-1, -2)) * self.scale  # (B, H, T, T)
            p = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
            x = self._rest(block, x, p @ v)
            keys.append(k)
            values.append(v)
        return self._head(x), torch.stack(keys), torch.stack(values)

    def step(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
             past_k: Sequence[torch.Tensor], past_v: Sequence[torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Logits (B, V) and the new keys, values (L, B, H, 1, D) of one token per row;
        ``past_k``/``past_v``: each layer's (B, H, S, D) (a stacked tensor does too).

        Written for one token: with T = 1, (B, 1, H, D) and (B, H, 1, D) lie alike in
        memory, so heads are split and joined by reshapes with constant shapes (no
        transposes, no shape arithmetic in the graph), the rotary tables are looked up once
        for all layers, and queries and keys are rotated together. The graph has about 40%
        fewer nodes than the general form, which at batch 1 cost more than the products."""
        x = F.embedding(ids, self.model.embed.weight)  # (B, 1, C)
        cos = self.cos[positions].unsqueeze(1)  # (B, 1, 1, D)
        sin = self.signed_sin[positions].unsqueeze(1)
        mask = ~mask
        keys, values = [], []
        for i, block in enumerate(self.model.blocks):
            q, k, v = self._step_qkv(block, x, cos, sin)  # (B, H, 1, D); q scaled
            past = q @ past_k[i].transpose(-1, -2)  # (B, H, 1, S)
            new = (q * k).sum(-1, keepdim=True)  # (B, H, 1, 1)
            p = torch.softmax(torch.cat([past, new], -1).masked_fill(mask, float("-inf")), -1)
            y = p[..., :-1] @ past_v[i] + p[..., -1:] * v
            x = self._rest_joined(block, x, y.reshape(-1, 1, self.n_head * self.head_dim))
            keys.append(k)
            values.append(v)
        return self._head(x[:, 0]), torch.stack(keys), torch.stack(values)

    def _step_qkv(self, block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """:meth:`_qkv` of one token per row, the queries already scaled."""
        H, D = self.n_head, self.head_dim
        qkv = F.linear(self._norm(block.norm1, x), block.attn.qkv.weight)  # (B, 1, 3C)
        qk, v = qkv.split([2 * H * D, H * D], -1)
        qk = qk.reshape(-1, 2 * H, 1, D)
        qk = qk * cos + qk.index_select(-1, self.swap) * sin  # rotate-half RoPE
        q, k = qk.split([H, H], 1)
        return q * self.scale, k, v.reshape(-1, H, 1, D)

    def _rest_joined(self, block, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The block after attention with the heads joined, ``y`` (B, T, C)."""
        x = x + F.linear(y, block.attn.proj.weight)
        h = F.gelu(F.linear(self._norm(block.norm2, x), block.mlp.fc.weight), approximate="tanh")
        return x + F.linear(h, block.mlp.proj.weight)


class _Graph(nn.Module):
    """One of the twin's two functions as a module's forward, for the exporter."""

    def __init__(self, twin: DecoderTwin, name: str):
        super().__init__()
        self.twin, self.name = twin, name
        self.eval()  # the exporter restores this mode on every submodule (the model too)

    def forward(self, ids, positions, mask, *past):
        if self.name == "prefill":
            return self.twin.prefill(ids, positions, mask)
        n = len(past) // 2
        return self.twin.step(ids, positions, mask, past[:n], past[n:])


def prefill_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, T, T) causal mask of right-padded rows of ``lengths`` real tokens."""
    j = torch.arange(T, device=lengths.device)
    return ((j[None] <= j[:, None])[None] & (j < lengths[:, None])[:, None])[:, None]


def step_names(n_layer: int) -> list[str]:
    """The step graph's inputs: ids, positions, mask, then each layer's past keys, then
    each layer's past values (B, H, S, D)."""
    return ["ids", "positions", "mask", *(f"past_{kv}_{i}" for kv in "kv" for i in range(n_layer))]


def sample_inputs(vocab_size: int, lengths: list[int], seed: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Random right-padded ids (B, T), positions and the prefill mask, for checks."""
    gen = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(4, vocab_size, (len(lengths), T), generator=gen)
    positions = torch.arange(T).expand(len(lengths), T).contiguous()
    return ids, positions, prefill_mask(torch.tensor(lengths), T)


@torch.inference_mode()
def compare(model: Transformer, prefill: Callable, step: Callable,
            lengths: list[int] | None = None, seed: int = 0) -> float:  # fmt: skip
    """The largest logit difference of ``prefill`` and ``step`` (the twin's functions, or
    the graphs run by onnxruntime; torch tensors in and out, keys and values stacked (L, B,
    H, S, D)) against ``Transformer.forward``: a ragged prefill (every real position against
    the uncached model, each row's last against a cached prefill), then two cached steps."""
    lengths = [min(n, model.config.max_seq_len - 2) for n in lengths or [7, 3, 5]]
    ids, positions, mask = sample_inputs(model.config.vocab_size, lengths, seed)
    logits, k, v = prefill(ids, positions, mask)
    diffs = [(logits[b, :n] - model(ids[b : b + 1, :n])[0]).abs().max()
             for b, n in enumerate(lengths)]  # fmt: skip
    cache = model.new_cache(len(lengths), max(lengths) + 2)
    pos = torch.tensor(lengths)
    last = model(ids, cache=cache, last_only=True, lengths=pos)[:, 0]
    diffs.append((logits[torch.arange(len(lengths)), pos - 1] - last).abs().max())
    for tok in (ids[:, :1], ids[:, 1:2]):
        seen = torch.arange(k.shape[3]) < pos[:, None]
        step_mask = torch.cat([seen, torch.ones_like(seen[:, :1])], 1)[:, None, None]
        out, nk, nv = step(tok, pos[:, None], step_mask, k, v)
        diffs.append((out - model(tok, cache=cache, last_only=True)[:, 0]).abs().max())
        k, v, pos = _write(k, nk, pos), _write(v, nv, pos), pos + 1
    return float(torch.stack(diffs).max())


def _write(cache: torch.Tensor, new: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``cache`` (L, B, H, S, D) grown by one slot, each row's ``new`` key at slot ``pos``."""
    cache = torch.cat([cache, torch.zeros_like(cache[:, :, :, :1])], 3)
    cache[:, torch.arange(len(pos)), :, pos] = new[:, :, :, 0].transpose(0, 1)
    return cache


def check_twin(model: Transformer, twin: DecoderTwin) -> float:
    """:func:`compare` of the twin; returns the largest logit difference.

    Raises:
        ValueError: the twin differs by more than :data:`TOLERANCE`.
    """
    worst = compare(model, twin.prefill, twin.step)
    if worst > TOLERANCE:
        raise ValueError(f"the export's twin differs from the model by {worst:.2e} in logits")
    return worst


def onnx_difference(model: Transformer, out_dir: str | Path) -> float:
    """:func:`compare` of the graphs written under ``out_dir``, run by onnxruntime."""
    prefill_s, step_s = session(Path(out_dir) / PREFILL), session(Path(out_dir) / STEP)
    names = step_names(model.config.n_layer)

    def run(sess, feed: dict) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(x) for x in sess.run(None, feed))

    def prefill(ids, positions, mask):
        return run(prefill_s, {"ids": ids.numpy(), "positions": positions.numpy(),
                               "mask": mask.numpy()})  # fmt: skip

    def step(ids, positions, mask, k, v):
        arrays = [ids, positions, mask, *k, *v]
        return run(step_s, {n: a.contiguous().numpy() for n, a in zip(names, arrays, strict=True)})

    return compare(model, prefill, step, [9, 4, 6], seed=1)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict[str, dict[int, str]]) -> None:  # fmt: skip
    """Write one graph with the TorchScript exporter (``dynamo=False``: the dynamo exporter
    works too but needs onnxscript and takes several times longer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                          do_constant_folding=True)  # fmt: skip


@torch.no_grad()
def export_graphs(twin: DecoderTwin, out_dir: Path) -> None:
    """Write the prefill and step graphs of ``twin`` under ``out_dir``."""
    cfg = twin.model.config
    ids, positions, mask = sample_inputs(cfg.vocab_size, [5, 3])
    _, k, v = twin.prefill(ids, positions, mask)
    _export(_Graph(twin, "prefill"), (ids, positions, mask), out_dir / PREFILL,
            ["ids", "positions", "mask"], ["logits", "keys", "values"],
            {"ids": {0: "B", 1: "T"}, "positions": {0: "B", 1: "T"},
             "mask": {0: "B", 2: "T", 3: "T"}, "logits": {0: "B", 1: "T"},
             "keys": {1: "B", 3: "T"}, "values": {1: "B", 3: "T"}})  # fmt: skip
    names = step_names(cfg.n_layer)
    axes = {name: {0: "B", 2: "S"} for name in names[3:]}
    axes |= {"ids": {0: "B"}, "positions": {0: "B"}, "mask": {0: "B", 3: "S+1"},
             "logits": {0: "B"}, "new_k": {1: "B"}, "new_v": {1: "B"}}  # fmt: skip
    step_mask = torch.ones(2, 1, 1, k.shape[3] + 1, dtype=torch.bool)
    args = (ids[:, :1], positions[:, :1] + 5, step_mask, *k, *v)
    _export(_Graph(twin, "step"), args, out_dir / STEP, names, ["logits", "new_k", "new_v"], axes)


def session(path: str | Path, threads: int | None = None, spin: bool = False) -> InferenceSession:
    """An onnxruntime CPU session for the graph at ``path`` with ``threads`` intra-op threads
    (default: torch's thread count, so both backends use the same cores). With ``spin`` its
    idle threads wait for the next operation by spinning instead of sleeping: at batch 16 a
    step of the shipped model took 4.7 against 8.1 ms (2 threads), and it pays only where
    nothing else wants those cores between two steps (see ``OnnxDecoder``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize(path: Path) -> None:
    """Replace the graph at ``path`` with its INT8 version (dynamic quantization: weights
    stored as int8 per output channel, activations quantized on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(".int8.onnx")
    logging.disable(logging.WARNING)  # its advice to pre-process, printed on every call
    try:
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
    tmp.replace(path)


def export_onnx(model_folder_path: str | Path, out_dir: str | Path, int8: bool = False) -> dict:
    """Export the model folder ``model_folder_path`` to ``out_dir``: the two graphs (INT8
    weights with ``int8``), the folder's ``config.json`` (model and tokenizer configs and
    metadata, so the ONNX folder describes itself) and ``onnx.json``. ``out_dir`` is written
    whole or not at all; it must be new, empty or an earlier export.

    Returns what ``onnx.json`` holds plus ``files`` (the paths written) and the largest
    logit differences against PyTorch on a ragged sample: ``twin_max_diff`` (the traced
    math) and ``onnx_max_diff`` (the written graphs run by onnxruntime).

    Raises:
        ModelLoadError: not a model folder. ValueError: an unsupported model, or an
            ``out_dir`` that holds something else.
    """
    src, out = Path(model_folder_path), Path(out_dir)
    if out.exists() and not (out / META).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an ONNX export; give a new or empty folder")
    model = load_model(src, "cpu").model.float().eval()
    check_supported(model)
    twin = DecoderTwin(model).eval()
    twin_diff = check_twin(model, twin)
    meta = {"format": FORMAT, "prefill": PREFILL, "step": STEP, "int8": int8,
            "source": str(src.resolve()), "weights_sha256": weights_sha256(src), "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=False)"}  # fmt: skip
    with atomic_dir(out) as tmp:
        export_graphs(twin, tmp)
        if int8:
            for name in (PREFILL, STEP):
                quantize(tmp / name)
        shutil.copyfile(src / CONFIG, tmp / CONFIG)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        onnx_diff = onnx_difference(model, tmp)
    files = [str(out / name) for name in (PREFILL, STEP, CONFIG, META)]
    return {**meta, "twin_max_diff": twin_diff, "onnx_max_diff": onnx_diff, "files": files}
