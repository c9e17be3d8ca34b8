"""The high-level API shared by the CLI and the server: ``load(model) -> Generator``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.device import generation_threads, pick_device
from aurl.generate.attributes import move
from aurl.generate.control_names import ControlRequest, resolve_controls
from aurl.generate.controls import ControlPlan, continue_prompt, plan_prompt
from aurl.generate.engine import Engine
from aurl.generate.infill import (
    harmony_ids,
    harmony_tracks,
    parse_span,
    parse_tracks,
    sample_fills,
    track_map,
    with_fill_controls,
)
from aurl.generate.latents import Latents, follow, join, prior
from aurl.generate.latents import interpolate as interpolate_latents
from aurl.generate.latents import vary as vary_latents
from aurl.generate.sampler import SamplingConfig, sample, sample_latents
from aurl.generate.stream import bar_seconds, finished_bars
from aurl.midi import read_midi
from aurl.models import ModelFolder, load_model
from aurl.models.calibration import use_fastest_attention
from aurl.models.folder import ModelLoadError
from aurl.models.vae import VAE
from aurl.paths import SHIPPED_MODEL, resolve_model_path
from aurl.tokens import BOS, EOS, PAD, TokenType
from aurl.tokens.grammar import FOLLOWS
from aurl.tokens.tracks import declared_tracks, track_names

MAX_BARS = 512
TOKENS_PER_BAR_LIMIT = 512  # safety stop for a model that never closes its bars
END_TYPES = [t for t, nxt in FOLLOWS.items() if TokenType.EOS in nxt]  # a piece may end there
SEGMENT_DRIFT = 0.5  # how far a VAE's next segment moves from the last one's latents


@dataclass
class Piece:
    """One generated piece: its ids, its score and a few numbers about it. ``asked_bars``
    is how many bars it should have had (prompt included); ``short`` says it ended before
    (the model did not close its bars within its token budget)."""

    ids: np.ndarray
    score: symusic.Score
    bars: int
    notes: int
    seconds: float
    asked_bars: int = 0

    @property
    def short(self) -> bool:
        return self.bars < self.asked_bars


@dataclass
class BarEvent:
    """A bar just finished while streaming: piece ``piece`` now holds ``bar`` bars (``ids``
    and ``score`` up to the end of that bar), ``elapsed`` seconds after the start, and the
    bar plays for ``bar_seconds``; ``last`` marks the piece's end."""

    piece: int
    bar: int
    ids: np.ndarray
    score: symusic.Score
    elapsed: float
    bar_seconds: float
    last: bool


@dataclass
class GenerationResult:
    pieces: list[Piece]
    new_tokens: int
    wall_time: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / max(self.wall_time, 1e-9)


class Generator:
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
        given). ``progress(engine)`` is called after every step (a transformer's pieces
        only)."""
        batch, generator, plan = self._start(bars, num, seed, prompt, controls)
        if sampling is not None and sampling.beams > 1 and num > 1:
            raise ValueError(f"beam search finds the one most likely piece; --num {num} would "
                             "repeat it (use --best-of to keep the likeliest of samples)")  # fmt: skip
        if isinstance(self.model, VAE):
            return self._segments(bars, num, sampling or SamplingConfig(), generator)
        t0 = time.perf_counter()
        out = sample(self.model, self.tokenizer.vocab, batch, prompt_bars + bars,
                     bars * TOKENS_PER_BAR_LIMIT, sampling or SamplingConfig(), generator,
                     progress, [plan] * num)  # fmt: skip
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
        sampling = sampling or SamplingConfig()
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

    def infill(self, path: str | Path, bars: str, tracks: str | None = None, num: int = 1,
               sampling: SamplingConfig | None = None, seed: int | None = None,
               controls: ControlRequest | None = None) -> GenerationResult:  # fmt: skip
        """Regenerate bars ``bars`` (``"5-8"``, from 1) of a MIDI file given everything before
        and after; with ``tracks`` (``"alto,tenor"``) only those tracks' notes, the others as
        context. Every other note comes back as it was.

        Raises:
            MidiError: the file cannot be read. ValueError: a span or track the piece lacks,
            or a model trained without infilling; a control it cannot take.
        """
        return self.infill_score(read_midi(path), bars, tracks, num, sampling, seed, controls)

    def infill_score(self, score: symusic.Score, bars: str, tracks: str | None = None,
                     num: int = 1, sampling: SamplingConfig | None = None,
                     seed: int | None = None,
                     controls: ControlRequest | None = None) -> GenerationResult:  # fmt: skip
        """:meth:`infill` on a score in memory; ``controls`` (style, key and the bar
        controls, cycled over the filled bars) steer what is written."""
        vocab = self._fill_vocab()
        ids = self.tokenizer.encode(score)
        first, count = parse_span(bars, int((vocab.types[ids] == TokenType.BAR).sum()))
        ids = self._fill_controls(ids, controls, first, count)
        targets = None
        if tracks:
            if not vocab.has_tracks:
                raise ValueError(f"{self.folder.path}: this model has no tracks; fill bars only")
            targets = parse_tracks(tracks, track_names(*declared_tracks(ids, vocab)))
        mapping = track_map(score, vocab.config.tracks) if vocab.has_tracks else [0]
        return self._fill(score, ids, ids, first, count, targets, mapping, {}, num, sampling,
                          seed)  # fmt: skip

    def harmonize(
        self,
        path: str | Path,
        num: int = 1,
        sampling: SamplingConfig | None = None,
        seed: int | None = None,
        controls: ControlRequest | None = None,
    ) -> GenerationResult:
        """Write Alto, Tenor and Bass under the one-track melody of a MIDI file (which comes
        back note for note as the Soprano), under ``controls`` (as :meth:`infill` takes)."""
        return self.harmonize_score(read_midi(path), num, sampling, seed, controls)

    def harmonize_score(self, score: symusic.Score, num: int = 1,
                        sampling: SamplingConfig | None = None, seed: int | None = None,
                        controls: ControlRequest | None = None) -> GenerationResult:  # fmt: skip
        """:meth:`harmonize` on a score in memory."""
        vocab = self._fill_vocab()
        if not vocab.has_tracks:
            raise ValueError(f"{self.folder.path}: harmonizing needs a model with tracks")
        ids = self.tokenizer.encode(score)
        n_bars = int((vocab.types[ids] == TokenType.BAR).sum())
        full, targets = harmony_ids(self._fill_controls(ids, controls, 0, n_bars), vocab)
        mapping = track_map(score, vocab.config.tracks)
        extra = harmony_tracks(int(score.tracks[mapping[0]].program))
        return self._fill(score, ids, full, 0, n_bars, targets, mapping, extra, num, sampling,
                          seed)  # fmt: skip

    def _fill_vocab(self):
        vocab = self.tokenizer.vocab
        if isinstance(self.model, VAE) or not vocab.has_infill:
            raise ValueError(f"{self.folder.path}: this model was trained without infilling; "
                             "train with tokenizer.infill=true")  # fmt: skip
        return vocab

    def _fill_controls(self, ids: np.ndarray, controls: ControlRequest | None, first: int,
                       count: int) -> np.ndarray:  # fmt: skip
        """``ids`` with the controls asked for, for filling bars ``first .. first+count-1``."""
        if controls is None:
            return ids
        plan = resolve_controls(controls, self.tokenizer.vocab)
        return with_fill_controls(ids, self.tokenizer.vocab, plan, first, count,
                                  controls.style is not None)  # fmt: skip

    def _fill(self, score, ids, context, first, count, targets, mapping, extra, num, sampling,
              seed) -> GenerationResult:  # fmt: skip
        """Sample ``num`` second passes after the prompt of ``context``, each merged into
        ``score``."""
        generator = self._generator(seed)
        t0 = time.perf_counter()
        fills = sample_fills(self.model, self.tokenizer.vocab, score, ids, context, (first, count),
                             targets, mapping, extra, num, sampling or SamplingConfig(),
                             generator, count * TOKENS_PER_BAR_LIMIT)  # fmt: skip
        pieces = []
        for row, merged, bars, _ in fills:
            seconds = merged.to("second").end() if merged.note_num() else 0.0
            pieces.append(Piece(row, merged, bars, merged.note_num(), float(seconds)))
        return GenerationResult(pieces, sum(f[3] for f in fills), time.perf_counter() - t0)

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

    def _segments(self, bars: int, num: int, sampling: SamplingConfig,
                  generator: torch.Generator, drift: float = SEGMENT_DRIFT) -> GenerationResult:  # fmt: skip
        """A VAE's pieces, K bars at a time: the first segment's latents from the prior, each
        next segment's from the posterior of the one before, moved by ``drift`` (see
        :func:`~aurl.generate.latents.follow`); the segments are joined at their bar lines."""
        vae, vocab = self._vae(), self.tokenizer.vocab
        cfg, bos = vae.config, int(vocab.offsets[TokenType.BOS])
        z = prior(num, cfg.z_global, cfg.bars, cfg.z_bar, generator, self.device)
        rows: list[list[np.ndarray]] = [[np.array([bos])] for _ in range(num)]
        t0 = time.perf_counter()
        for first in range(0, bars, cfg.bars):
            n = min(cfg.bars, bars - first)
            out = sample_latents(vae, vocab, z, n * TOKENS_PER_BAR_LIMIT, sampling, generator, n)
            for row, ids in zip(rows, out.cpu().numpy(), strict=True):
                row.append(_complete(ids[(ids != PAD) & (ids != EOS) & (ids != bos)], vocab))
            if first + cfg.bars < bars:
                with torch.no_grad():
                    segment = out.masked_fill(out == EOS, PAD)
                    z = follow(vae.encode(segment).mean(), drift, generator)
        width = max(sum(len(part) for part in row) for row in rows) + 1
        joined = torch.full((num, width), PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = np.concatenate([*row, [EOS]])
            joined[i, : len(ids)] = torch.as_tensor(ids)
        return self.collect(joined, 1, time.perf_counter() - t0, bars)

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

    def _vae(self) -> VAE:
        if not isinstance(self.model, VAE):
            raise ValueError(f"{self.folder.path}: not a latent model (arch "
                             f"{self.model.config.arch}); pass --model with a VAE")  # fmt: skip
        return self.model

    def segment_latents(self, path: str | Path) -> Latents:
        """The posterior mean of the first K bars of a MIDI file (K: the VAE's segment).

        Raises:
            MidiError: the file cannot be read.
        """
        vae = self._vae()
        ids, _ = self.prompt_ids(path, vae.config.bars)
        ids = ids[: vae.decoder.config.max_seq_len - vae.prefix_len]
        batch = torch.as_tensor(ids[None], dtype=torch.long, device=self.device)
        with torch.no_grad():
            return vae.encode(batch).mean()

    def decode_latents(self, latents: Latents, sampling: SamplingConfig | None = None,
                       seed: int | None = None) -> GenerationResult:  # fmt: skip
        """One K-bar piece per latent (greedy unless ``sampling`` says otherwise)."""
        vae = self._vae()
        generator = self._generator(seed)
        t0 = time.perf_counter()
        out = sample_latents(vae, self.tokenizer.vocab, latents,
                             vae.config.bars * TOKENS_PER_BAR_LIMIT,
                             sampling or SamplingConfig(greedy=True), generator)  # fmt: skip
        return self.collect(out, 1, time.perf_counter() - t0, vae.config.bars)

    def interpolate(self, a: str | Path, b: str | Path, steps: int = 8, method: str = "slerp",
                    sampling: SamplingConfig | None = None,
                    seed: int | None = None) -> GenerationResult:  # fmt: skip
        """``steps`` pieces from the first K bars of ``a`` to those of ``b``, both included."""
        path = interpolate_latents(self.segment_latents(a), self.segment_latents(b), steps,
                                   method)  # fmt: skip
        return self.decode_latents(path, sampling, seed)

    def vary(self, path: str | Path, num: int = 4, amount: float = 0.5,
             sampling: SamplingConfig | None = None, seed: int | None = None,
             attribute: tuple[str, float] | None = None) -> GenerationResult:  # fmt: skip
        """``num`` variations of the first K bars of ``path``: latents ``amount`` away; or,
        with ``attribute`` (a name and how far), ``num`` steps along that attribute's vector
        up to that far (``amount`` then adds noise as well).

        Raises:
            ValueError: an attribute the model has no vector for.
        """
        generator = self._generator(seed)
        z = self.segment_latents(path)
        if attribute is not None:
            name, far = attribute
            vectors = self.folder.meta.get("attributes", {})
            if name not in vectors:
                known = ", ".join(vectors) or "none"
                raise ValueError(f"{self.folder.path}: no attribute {name!r} (known: {known})")
            moved = [move(z, vectors[name], far * (i + 1) / num) for i in range(num)]
            z = join(moved)
            if amount:  # noise around each step
                z = vary_latents(z, num, amount, generator)
            return self.decode_latents(z, sampling, seed)
        return self.decode_latents(vary_latents(z, num, amount, generator), sampling, seed)


def _complete(ids: np.ndarray, vocab) -> np.ndarray:
    """``ids`` up to the last token a bar line may follow (a segment cut short by its token
    budget could end inside a note)."""
    can_end = np.isin(vocab.types[ids], END_TYPES)
    return ids[: int(np.flatnonzero(can_end)[-1]) + 1] if can_end.any() else ids[:0]


def load(model: str | Path | None = None, device: str = "auto",
         default: Path = SHIPPED_MODEL, threads: int | None = None,
         backend: str = "torch") -> Generator:  # fmt: skip
    """Load a model folder for generation: a path, a run folder, the name of a shipped model
    (``bach-small``, ``vae-small``), or with None ``default`` (the shipped transformer;
    :data:`~aurl.paths.SHIPPED_VAE` for the latent commands).

    On the CPU, torch's thread count is set to ``threads`` (default: ``$AURL_THREADS``, else
    the cores other processes leave idle; see :func:`aurl.device.generation_threads`).

    ``backend="onnx"`` runs an export of ``aurl export`` with onnxruntime on the CPU (needs
    ``pip install -e '.[onnx]'``): ``model`` is then the ONNX folder itself (it holds
    ``onnx.json``), or a model folder with its export in an ``onnx/`` subfolder.

    Raises:
        ModelLoadError: the folder is missing or not a model (or holds no ONNX export).
        ValueError: a bad device, thread count or backend.
    """
    if backend not in ("torch", "onnx"):
        raise ValueError(f"unknown backend {backend!r} (known: torch, onnx)")
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
    if backend == "onnx":
        from aurl.generate.onnx_backend import load_onnx

        return Generator(load_onnx(path), dev)
    folder = load_model(path, dev)
    use_fastest_attention(folder.model, dev)
    return Generator(folder, dev)
