"""The high-level API shared by the CLI and (later) the server: ``load(model) -> Generator``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch

from aurl.device import fast_attention_dtype, pick_device
from aurl.generate.attributes import move
from aurl.generate.latents import Latents
from aurl.generate.latents import interpolate as interpolate_latents
from aurl.generate.latents import vary as vary_latents
from aurl.generate.sampler import SamplingConfig, sample
from aurl.midi import read_midi
from aurl.models import ModelFolder, load_model
from aurl.models.folder import ModelLoadError
from aurl.models.vae import VAE, LatentDecoder
from aurl.paths import resolve_model_path
from aurl.tokens import EOS, PAD, TokenType

MAX_BARS = 512
TOKENS_PER_BAR_LIMIT = 512  # safety stop for a model that never closes its bars


@dataclass
class Piece:
    """One generated piece: its ids, its score and a few numbers about it."""

    ids: np.ndarray
    score: symusic.Score
    bars: int
    notes: int
    seconds: float


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
        ids = self.tokenizer.encode(read_midi(path))
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
    ) -> GenerationResult:
        """Sample ``num`` pieces of ``bars`` new bars, optionally continuing ``prompt`` ids."""
        if not 1 <= bars <= MAX_BARS:
            raise ValueError(f"bars must be between 1 and {MAX_BARS}, got {bars}")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        start = (
            np.array([self.tokenizer.vocab.offsets[TokenType.BOS]]) if prompt is None else prompt
        )
        batch = torch.as_tensor(np.tile(start, (num, 1)), dtype=torch.long, device=self.device)
        model = self.model
        if isinstance(model, VAE):
            model = self._prior_decoder(bars, num, prompt, generator)
        t0 = time.perf_counter()
        out = sample(model, self.tokenizer.vocab, batch, prompt_bars + bars,
                     bars * TOKENS_PER_BAR_LIMIT, sampling or SamplingConfig(), generator)  # fmt: skip
        return self._result(out, len(start), time.perf_counter() - t0)

    def _result(self, out: torch.Tensor, start: int, wall: float) -> GenerationResult:
        """Pieces (scores and counts) from sampled rows that began with ``start`` ids."""
        pieces, new_tokens = [], 0
        for row in out.cpu().numpy():
            ids = row[row != PAD]
            new_tokens += len(ids) - start
            score = self.tokenizer.decode(ids)
            n_bars = int((self.tokenizer.vocab.types[ids] == TokenType.BAR).sum())
            seconds = score.to("second").end() if score.note_num() else 0.0
            pieces.append(Piece(ids, score, n_bars, score.note_num(), float(seconds)))
        return GenerationResult(pieces, new_tokens, wall)

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
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        num = latents[0].shape[0]
        bos = self.tokenizer.vocab.offsets[TokenType.BOS]
        prompt = torch.full((num, 1), bos, dtype=torch.long, device=self.device)
        t0 = time.perf_counter()
        out = sample(LatentDecoder(vae, *latents), self.tokenizer.vocab, prompt, vae.config.bars,
                     vae.config.bars * TOKENS_PER_BAR_LIMIT,
                     sampling or SamplingConfig(greedy=True), generator)  # fmt: skip
        return self._result(out, 1, time.perf_counter() - t0)

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
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        z = self.segment_latents(path)
        if attribute is not None:
            name, far = attribute
            vectors = self.folder.meta.get("attributes", {})
            if name not in vectors:
                known = ", ".join(vectors) or "none"
                raise ValueError(f"{self.folder.path}: no attribute {name!r} (known: {known})")
            moved = [move(z, vectors[name], far * (i + 1) / num) for i in range(num)]
            z = torch.cat([m[0] for m in moved]), torch.cat([m[1] for m in moved])
            if amount:
                z = tuple(x + amount * torch.randn(x.shape, generator=generator, device=x.device)
                          for x in z)  # fmt: skip
            return self.decode_latents(z, sampling, seed)
        return self.decode_latents(vary_latents(z, num, amount, generator), sampling, seed)

    def _prior_decoder(self, bars: int, num: int, prompt, generator) -> LatentDecoder:
        """A VAE's decoder with latents drawn from the prior, one per piece."""
        cfg = self.model.config
        if bars > cfg.bars:
            raise ValueError(f"{self.folder.path}: this VAE writes {cfg.bars} bars at a time; "
                             f"ask for --bars {cfg.bars} or fewer")  # fmt: skip
        if prompt is not None:
            raise ValueError(f"{self.folder.path}: a VAE does not continue a prompt; use a "
                             "transformer model for --prompt")  # fmt: skip

        def draw(*shape: int) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=self.device)

        return LatentDecoder(self.model, draw(num, cfg.z_global), draw(num, cfg.bars, cfg.z_bar))


def load(model: str | Path | None = None, device: str = "auto") -> Generator:
    """Load a model folder (the shipped model by default) for generation.

    Raises:
        ModelLoadError: the folder is missing or not a model.
    """
    path = resolve_model_path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model folder")
    dev = pick_device(device)
    folder = load_model(path, dev)
    folder.model.set_attention_dtype(fast_attention_dtype(dev))
    return Generator(folder, dev)
