"""The latent-model methods of :class:`aurl.api.Generator`: a VAE's pieces segment after
segment, its latents of a file, interpolation and variations (:mod:`aurl.generate.latents`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from aurl.generate.attributes import move
from aurl.generate.latents import Latents, follow, join, prior
from aurl.generate.latents import interpolate as interpolate_latents
from aurl.generate.latents import vary as vary_latents
from aurl.generate.sampler import SamplingConfig, sample_latents
from aurl.models.vae import VAE
from aurl.results import TOKENS_PER_BAR_LIMIT, GenerationResult
from aurl.tokens import EOS, PAD, TokenType
from aurl.tokens.grammar import FOLLOWS

END_TYPES = [t for t, nxt in FOLLOWS.items() if TokenType.EOS in nxt]  # a piece may end there
SEGMENT_DRIFT = 0.5  # how far a VAE's next segment moves from the last one's latents


class LatentMethods:
    """A VAE's generation, interpolation and variations; mixed into
    :class:`aurl.api.Generator` (which gives ``folder``, ``model``, ``tokenizer``,
    ``device``, ``prompt_ids``, ``collect`` and ``_generator``)."""

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
