"""The high-level API shared by the CLI and the server: ``load(model) -> Generator``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.api_fill import FillMethods
from aurl.api_latent import LatentMethods
from aurl.device import generation_threads, pick_device
from aurl.evaluate.adherence import request_judge
from aurl.generate.control_names import ControlRequest, resolve_controls
from aurl.generate.controls import ControlPlan, continue_prompt, plan_prompt
from aurl.generate.engine import Engine
from aurl.generate.sampler import SamplingConfig, default_sampling, sample
from aurl.generate.stream import bar_seconds, finished_bars
from aurl.midi import read_midi
from aurl.models import ModelFolder, load_model
from aurl.models.calibration import use_fastest_attention
from aurl.models.folder import ModelLoadError
from aurl.models.vae import VAE
from aurl.paths import SHIPPED_DIR, SHIPPED_MODEL, SHIPPED_VAE, resolve_model_path
from aurl.results import MAX_BARS, TOKENS_PER_BAR_LIMIT, BarEvent, GenerationResult, Piece
from aurl.tokens import BOS, EOS, PAD, TokenType

__all__ = ["MAX_BARS", "TOKENS_PER_BAR_LIMIT", "BarEvent", "GenerationResult", "Generator",
           "Piece", "load"]  # fmt: skip


class Generator(FillMethods, LatentMethods):
    """Generates music with one loaded model."""

    def __init__(self, folder: ModelFolder, device: torch.device):
        self.folder, self.device = folder, device
        self.model, self.tokenizer = folder.model, folder.tokenizer

    def prompt_ids(self, path: str | Path, bars: int) -> tuple[np.ndarray, int]:
        """BOS plus the first ``bars`` bars of a MIDI file, and the bars actually taken.

        Raises:
            MidiError: the file cannot be read.
        """
        return self.score_prompt(read_midi(path), bars)

    def score_prompt(self, score: symusic.Score, bars: int) -> tuple[np.ndarray, int]:
        """BOS plus the first ``bars`` bars of a score, and the bars actually taken."""
        ids = self.tokenizer.encode(score)
        ids = ids[ids != EOS]
        bar_at = np.flatnonzero(self.tokenizer.vocab.types[ids] == TokenType.BAR)
        if len(bar_at) > bars:
            ids = ids[: bar_at[bars]]
        return ids, min(bars, len(bar_at))

    def generate(
        self,
        bars: int = 8,
        num: int = 1,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        prompt: np.ndarray | None = None,
        prompt_bars: int = 0,
        progress: Callable[[Engine], None] | None = None,
        controls: ControlRequest | None = None,
    ) -> GenerationResult:
        """Sample ``num`` pieces of ``bars`` new bars, optionally continuing ``prompt`` ids,
        under ``controls`` (a model trained with controls writes chorales when none is
        given), with ``sampling`` (default: as the CLI samples, steered where a key or bar
        control is asked; see :func:`~aurl.generate.sampler.default_sampling`).
        ``progress(engine)`` is called after every step (a transformer's pieces only)."""
        batch, generator, plan = self._start(bars, num, seed, prompt, controls)
        if sampling is not None and sampling.beams > 1 and num > 1:
            raise ValueError(f"beam search finds the one most likely piece; --num {num} would "
                             "repeat it (use --best-of to keep the likeliest of samples)")  # fmt: skip
        if isinstance(self.model, VAE):
            return self._segments(bars, num, sampling or SamplingConfig(), generator)
        t0 = time.perf_counter()
        out = sample(self.model, self.tokenizer.vocab, batch, prompt_bars + bars,
                     bars * TOKENS_PER_BAR_LIMIT, sampling or default_sampling(controls),
                     generator, progress, [plan] * num,
                     judge=None if controls is None else request_judge([plan] * num,
                                                                       self.tokenizer.vocab))  # fmt: skip
        tempo = controls.tempo if controls is not None else None
        return self.collect(out, batch.shape[1], time.perf_counter() - t0, prompt_bars + bars,
                            tempo)  # fmt: skip

    def stream(
        self,
        bars: int = 8,
        num: int = 1,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        prompt: np.ndarray | None = None,
        prompt_bars: int = 0,
        controls: ControlRequest | None = None,
    ) -> Iterator[BarEvent]:
        """Generate as :meth:`generate` does (sampling only: no beams, no best-of), yielding
        every bar of every piece as soon as it is finished."""
        batch, generator, plan = self._start(bars, num, seed, prompt, controls)
        if isinstance(self.model, VAE):
            raise ValueError(f"{self.folder.path}: streaming needs a transformer model")
        sampling = sampling or default_sampling(controls)
        if sampling.beams > 1 or sampling.best_of > 1:
            raise ValueError("streaming samples one candidate per piece: no beams or best-of")
        vocab = self.tokenizer.vocab
        engine = Engine(self.model, vocab, sampling, generator)
        engine.add(list(batch), prompt_bars + bars, bars * TOKENS_PER_BAR_LIMIT, [plan] * num)
        t0 = time.perf_counter()
        for row, bar, last in finished_bars(engine, [prompt_bars] * num):
            ids = engine.row(row).cpu().numpy().copy()  # the engine goes on writing
            if not last:  # the Bar just drawn opens the next bar
                ids = ids[:-1]
            lengths = bar_seconds(ids, vocab)
            tempo = controls.tempo if controls is not None else None
            yield BarEvent(row, bar, ids, self.decode(ids, tempo), time.perf_counter() - t0,
                           lengths[-1] if lengths else 0.0, last)  # fmt: skip

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        return generator

    def _start(self, bars: int, num: int, seed: int | None, prompt: np.ndarray | None,
               controls: ControlRequest | None = None,
               ) -> tuple[torch.Tensor, torch.Generator, ControlPlan | None]:  # fmt: skip
        """Check the request; the (num, T0) prompt batch, the seeded generator and the
        controls' plan (None for a model without controls asked for none)."""
        batch, plan = self.start_ids(bars, num, prompt, controls)
        return batch, self._generator(seed), plan

    def start_ids(self, bars: int, num: int, prompt: np.ndarray | None = None,
                  controls: ControlRequest | None = None,
                  ) -> tuple[torch.Tensor, ControlPlan | None]:  # fmt: skip
        """Check a request; the (num, T0) batch of first ids (the prompt, or BOS and the
        controls' head) and the controls' plan (None for a model without controls asked for
        none).

        Raises:
            ValueError: a bar count out of range, a prompt for a VAE, a bad control.
        """
        if not 1 <= bars <= MAX_BARS:
            raise ValueError(f"bars must be between 1 and {MAX_BARS}, got {bars}")
        if isinstance(self.model, VAE) and prompt is not None:
            raise ValueError(f"{self.folder.path}: a VAE does not continue a prompt; use a "
                             "transformer model for --prompt")  # fmt: skip
        vocab = self.tokenizer.vocab
        plan = None  # a model with infilling gets one too: no Fill or Infill in a plain piece
        if controls is not None or vocab.has_controls or vocab.has_infill:
            plan = resolve_controls(controls or ControlRequest(), vocab)
        if prompt is None:
            start = plan_prompt(plan, vocab) if plan is not None else np.array([BOS])
        else:
            start = prompt if plan is None else continue_prompt(plan, prompt, vocab)
        batch = torch.as_tensor(np.tile(start, (num, 1)), dtype=torch.long, device=self.device)
        return batch, plan

    def collect(self, out: torch.Tensor, start: int, wall: float, asked: int = 0,
                tempo: float | None = None) -> GenerationResult:  # fmt: skip
        """Pieces (scores and counts) from sampled rows that began with ``start`` ids and
        should have had ``asked`` bars; a requested ``tempo`` is written exactly (the tokens
        hold its nearest bin)."""
        pieces, new_tokens = [], 0
        for row in out.cpu().numpy():
            ids = row[row != PAD]
            new_tokens += len(ids) - start
            score = self.decode(ids, tempo)
            n_bars = int((self.tokenizer.vocab.types[ids] == TokenType.BAR).sum())
            seconds = score.to("second").end() if score.note_num() else 0.0
            pieces.append(Piece(ids, score, n_bars, score.note_num(), float(seconds), asked))
        return GenerationResult(pieces, new_tokens, wall)

    def decode(self, ids: np.ndarray, tempo: float | None = None) -> symusic.Score:
        """A score from ids; a requested ``tempo`` is written exactly (the tokens hold its
        nearest bin)."""
        score = self.tokenizer.decode(ids)
        if tempo is not None:
            score.tempos.clear()
            score.tempos.append(symusic.Tempo(0, float(tempo)))
        return score


def load(model: str | Path | None = None, device: str = "auto",
         default: Path = SHIPPED_MODEL, threads: int | None = None,
         backend: str = "auto") -> Generator:  # fmt: skip
    """Load a model folder for generation: a path, a run folder, the name of a shipped model
    (``many-small``, ``bach-small``, ``vae-small``), or with None ``default`` (the shipped
    transformer, many-small; :data:`~aurl.paths.SHIPPED_VAE` for the latent commands).

    On the CPU, torch's thread count is set to ``threads`` (default: ``$AURL_THREADS``, else
    the cores other processes leave idle; see :func:`aurl.device.generation_threads`); with
    the ONNX backend onnxruntime takes those threads and torch keeps one (it only masks and
    draws between two steps).

    ``backend="onnx"`` runs an export of ``aurl export`` with onnxruntime on the CPU (needs
    ``pip install -e '.[onnx]'``): ``model`` is then the ONNX folder itself (it holds
    ``onnx.json``), or a model folder with its export in an ``onnx/`` subfolder.
    ``backend="auto"`` (the default, as in every command) takes ONNX where it can: on the CPU,
    with onnxruntime installed, when an export made from exactly this model's weights exists
    (see :mod:`aurl.export.locate`; a shipped transformer's is made the first time, where
    ``onnx`` is installed); PyTorch otherwise, and whenever the export fails to load.

    Raises:
        ModelLoadError: the folder is missing or not a model (or holds no ONNX export).
        ValueError: a bad device, thread count or backend.
    """
    if backend not in ("torch", "onnx", "auto"):
        raise ValueError(f"unknown backend {backend!r} (known: torch, onnx, auto)")
    path = resolve_model_path(model, default)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model folder")
    dev = pick_device("cpu" if backend == "onnx" and device == "auto" else device)
    if backend == "onnx" and dev.type != "cpu":
        raise ValueError(f"the ONNX backend runs on the CPU, not {dev.type}")
    if dev.type == "cpu":
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be 1 or more, got {threads}")
        torch.set_num_threads(threads or generation_threads())
    export = path if backend == "onnx" else None
    if backend == "auto" and dev.type == "cpu":
        export = _usable_export(path)
    if export is not None:
        from aurl.generate.onnx_backend import load_onnx

        try:
            gen = Generator(load_onnx(export, threads=torch.get_num_threads()), dev)
            torch.set_num_threads(1)  # torch only masks and draws between onnxruntime's steps
            return gen
        except ModelLoadError as err:
            if backend == "onnx":
                raise
            print(f"aurl: generating with PyTorch ({str(err).splitlines()[0]})", file=sys.stderr)
    folder = load_model(path, dev)
    use_fastest_attention(folder.model, dev)
    return Generator(folder, dev)


def _usable_export(path: Path) -> Path | None:
    """The ONNX export of exactly this model, where onnxruntime can run it. A shipped
    model's is made (float32, in the user cache) the first time, where ``onnx`` is
    installed too, and made again when it was written in an older format (older exports
    run, more slowly); a model it cannot export runs with PyTorch."""
    from importlib.util import find_spec

    from aurl.export.locate import default_export_dir, export_format, find_export

    if find_spec("onnxruntime") is None:
        return None
    found = find_export(path)
    shipped = (
        path.resolve().parent == SHIPPED_DIR.resolve() and path.resolve() != SHIPPED_VAE.resolve()
    )
    if find_spec("onnx") is None or not shipped:
        return found
    from aurl.export.onnx import FORMAT, export_onnx

    if found is not None and export_format(found) == FORMAT:
        return found
    out = default_export_dir(path)
    try:
        export_onnx(path, out)
    except Exception as err:  # an optional speed-up: whatever stops it, generation goes on
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        then = "its older ONNX export" if found is not None else "PyTorch"
        print(f"aurl: generating with {then} ({path.name} not exported to ONNX: {why})",
              file=sys.stderr)  # fmt: skip
        return found  # an older export of these weights still runs
    return out
