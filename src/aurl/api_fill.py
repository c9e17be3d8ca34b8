"""The infilling methods of :class:`aurl.api.Generator`: regenerate bars or tracks of a piece,
or write voices under a melody, with both sides in view (:mod:`aurl.generate.infill`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import symusic

from aurl.generate.control_names import ControlRequest, resolve_controls
from aurl.generate.infill import (
    harmony_ids,
    harmony_tracks,
    parse_span,
    parse_tracks,
    sample_fills,
    track_map,
    with_fill_controls,
)
from aurl.generate.sampler import SamplingConfig, default_sampling
from aurl.midi import read_midi
from aurl.models.vae import VAE
from aurl.results import TOKENS_PER_BAR_LIMIT, GenerationResult, Piece
from aurl.tokens import TokenType
from aurl.tokens.tracks import declared_tracks, track_names


class FillMethods:
    """Infill and harmonize; mixed into :class:`aurl.api.Generator` (which gives
    ``folder``, ``model``, ``tokenizer`` and ``_generator``)."""

    def infill(self, path: str | Path, bars: str, tracks: str | None = None, num: int = 1,
               sampling: SamplingConfig | None = None, seed: int | None = None,
               controls: ControlRequest | None = None) -> GenerationResult:  # fmt: skip
        """Regenerate bars ``bars`` (``"5-8"``, from 1) of a MIDI file given everything before
        and after; with ``tracks`` (``"alto,tenor"``) only those tracks' notes, the others as
        context. Every other note comes back as it was. Without ``sampling``, as the CLI
        samples: steered in its voice leading (strength 2).

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
        sampling = sampling or default_sampling(controls, filling=True)
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
        sampling = sampling or default_sampling(controls, filling=True)
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
                             targets, mapping, extra, num, sampling,
                             generator, count * TOKENS_PER_BAR_LIMIT)  # fmt: skip
        pieces = []
        for row, merged, bars, _ in fills:
            seconds = merged.to("second").end() if merged.note_num() else 0.0
            pieces.append(Piece(row, merged, bars, merged.note_num(), float(seconds)))
        return GenerationResult(pieces, sum(f[3] for f in fills), time.perf_counter() - t0)
