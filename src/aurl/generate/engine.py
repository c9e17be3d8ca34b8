"""The batched step engine: one token per sequence per step, each sequence at its own place.

Everything that generates goes through :class:`Engine`: :func:`~aurl.generate.sampler.sample`,
streaming, beam search and best-of-N. Each row has its own prompt, bar limit, token budget and
position, so sequences with different prompts share a batch, and new sequences can join a
running batch between steps (:meth:`Engine.add`) into the slots of finished ones.

A row stops at EOS, when it is about to start one bar more than asked for (that Bar becomes
EOS), or when its token budget is spent. A full-attention model whose context fills restarts
that row alone from a bar line near the middle of its window; a sliding-window model never
restarts (its cache is a ring buffer). With tracks or controls, a restarted context keeps what
came before the row's first Bar (BOS, controls, track declarations) in front, as training
windows do.

Finished rows leave the cache once they are a quarter of it (:attr:`Engine.held` names the
rows it holds, in its order), so the model computes only rows still running: pieces of one
batch end at different times, and at batch 16 over 12 bars half the row-steps were of
finished rows. Their ids stay readable; a new row may take their slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aurl.generate import filters
from aurl.generate.controls import ControlPlan, ControlState
from aurl.generate.draws import RowDraws, RowSampling
from aurl.generate.filters import NEG_INF
from aurl.generate.guidance import Guide, check_scale
from aurl.models.cache import put_rows
from aurl.tokens import EOS, PAD, TokenType, Vocabulary
from aurl.tokens.mask import GrammarState


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    grammar: bool = True
    use_cache: bool = True
    fill_bars: bool = True  # forbid EOS before the last bar has started
    beams: int = 1  # beam search with this many beams (1: sample)
    length_penalty: float = 1.0  # beam scores are log p / length ** length_penalty
    best_of: int = 1  # sample this many candidates per piece, keep the most likely
    guidance: float = 1.0  # classifier-free guidance of the controls (1: none)
    steer: float = 0.0  # logit bias towards the bar controls asked for (0: none; see steer.py)


class Engine:
    """A batch of sequences decoded together.

    Args:
        model: a :class:`~aurl.models.Transformer` (or anything shaped like one: a latent
            decoder) in eval mode.
        vocab: the vocabulary the model speaks.
        config: the sampling settings.
        generator: the random source of every draw.
    """

    def __init__(self, model, vocab: Vocabulary, config: SamplingConfig | None = None,
                 generator: torch.Generator | None = None):  # fmt: skip
        self.model, self.vocab = model, vocab
        self.config = config or SamplingConfig()
        self.generator = generator
        self.device = model.embed.weight.device if hasattr(model, "embed") else _device(model)
        self.ctx = model.config.max_seq_len
        self.window = getattr(model.config, "window", 0)
        self.bar_id = int(vocab.offsets[TokenType.BAR])
        self.state = GrammarState(vocab, 0, self.device)
        self.controls: ControlState | None = None  # made by the first plan that comes
        self.draws: RowDraws | None = None  # settings per row: made by the first that come
        self.seq = torch.full((0, 0), PAD, dtype=torch.long, device=self.device)
        z = lambda dtype=torch.long: torch.zeros(0, dtype=dtype, device=self.device)  # noqa: E731
        self.length, self.offset, self.prompt_len, self.head = z(), z(), z(), z()
        self.keep_head = vocab.has_tracks or vocab.has_controls
        self.max_bars, self.stop_at = z(), z()
        self.done = z(torch.bool)
        self.logp = z(torch.float32)  # the model's log-likelihood of each row's new tokens
        self.logits = torch.zeros(0, vocab.size, device=self.device)  # (B, V) next-token logits
        self.cache = None
        self.held = z()  # the rows whose keys and values the cache holds, in its row order
        self.tokens = z()  # the tokens of the last step, PAD for rows already done
        self.guide: Guide | None = None  # unconditional twins: made by the first guided row

    @property
    def batch(self) -> int:
        return self.seq.shape[0]

    # -- joining ------------------------------------------------------------------------

    @torch.inference_mode()
    def add(self, prompts: list[torch.Tensor], max_bars: int | list[int],
            max_tokens: int | list[int],
            plans: list[ControlPlan | None] | None = None,
            samplings: list[RowSampling] | None = None,
            guidance: list[float] | None = None,
            steer: list[float] | None = None) -> list[int]:  # fmt: skip
        """Start sequences from ``prompts`` (1-D ids each); a row ends after ``max_bars`` bars
        in all (prompt included) or ``max_tokens`` new tokens. With controls, ``plans`` holds
        each row's requests (see :mod:`aurl.generate.controls`; None: none), ``guidance``
        each row's scale of classifier-free guidance of them (see
        :mod:`aurl.generate.guidance`) and ``steer`` its steering strength (see
        :mod:`aurl.generate.steer`; both default to the engine's). ``samplings`` gives each row
        its own temperature, top-k, top-p and seed (see :mod:`aurl.generate.draws`) in place
        of the engine's; once given, every row draws that way. New rows take the slots of
        finished ones first, so read a finished row (:meth:`row`) before adding more. Returns
        their row indices."""
        n = len(prompts)
        scales = torch.tensor([check_scale(g) for g in guidance or [self.config.guidance] * n])
        if self.guide is None and self.vocab.has_controls and bool((scales != 1).any()):
            self._start_guide()
        bars = torch.as_tensor(_per_row(max_bars, n), device=self.device)
        budget = torch.as_tensor(_per_row(max_tokens, n), device=self.device)
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        heads = torch.tensor([self._head(p) for p in prompts], device=self.device)
        offsets = torch.tensor([self._first_offset(p, int(h)) for p, h in zip(prompts, heads,
                                                                             strict=True)],
                               device=self.device)  # fmt: skip
        width = int((lengths + budget).max())
        ids = torch.full((n, width), PAD, dtype=torch.long, device=self.device)
        for i, p in enumerate(prompts):
            ids[i, : len(p)] = p.to(self.device)
        state = self.state.fresh(n)
        state.feed(ids[:, : int(lengths.max())], lengths)
        controls = None
        if self.controls is None and plans and any(p is not None for p in plans):
            self.controls = ControlState(self.vocab, device=self.device)
            self.controls.extend(self.controls.rows([None] * self.batch))
        if self.controls is not None:
            controls = self.controls.rows(plans or [None] * n, steer or [self.config.steer] * n)
            controls.feed(ids[:, : int(lengths.max())], lengths)
        if self.draws is None and samplings is not None:
            self.draws = RowDraws([self._default_draw()] * self.batch, self.device)
        logits, cache = self._prefill(ids, offsets, lengths, heads)
        twins = self.guide and self.guide.prefill(*self._context(ids, offsets, lengths, heads))
        if self.logits.shape[1] != logits.shape[1]:  # the model's vocabulary may be smaller
            self.logits = torch.zeros(self.batch, logits.shape[1], device=self.device)
        rows = self._place(n, width)
        self.seq[rows, :width] = ids
        for name, value in (("length", lengths), ("offset", offsets), ("prompt_len", lengths),
                            ("max_bars", bars), ("stop_at", lengths + budget),
                            ("head", heads)):  # fmt: skip
            getattr(self, name)[rows] = value
        self.done[rows] = budget <= 0
        self.logp[rows] = 0.0
        self.logits[rows] = logits.float()
        self.state.put(rows, state)
        if controls is not None:
            self.controls.put(rows, controls)
        if self.draws is not None:
            self.draws.put(rows, RowDraws(samplings or [self._default_draw()] * n, self.device))
        at = self._cache_rows(rows) if cache is not None else None
        if cache is not None:
            self.cache = put_rows(self.cache, at, cache, self.model, self.ctx)
        if twins:
            self.guide.grow(self.batch)
            self.guide.put(rows, *twins, scales, at=at)
        return rows.tolist()

    def _start_guide(self) -> None:
        """Make the twins, for the rows already running too (unguided: scale 1)."""
        self.guide = Guide(self.model, self.vocab, self.config.use_cache, self.device)
        self.guide.grow(self.batch)
        rows = self.held if self.config.use_cache else torch.arange(self.batch, device=self.device)
        if len(rows):  # the twins' cache rows follow the engine's
            where = (self.seq[rows], self.offset[rows], self.length[rows], self.head[rows])
            twins = self.guide.prefill(*self._context(*where))
            at = torch.arange(len(rows), device=self.device) if twins[1] is not None else None
            self.guide.put(rows, *twins, torch.ones(len(rows)), at=at)

    def _place(self, n: int, width: int) -> torch.Tensor:
        """Row indices for ``n`` new sequences of up to ``width`` tokens: finished rows first,
        then new rows at the end (every per-row tensor grows)."""
        free = self.done.nonzero().flatten()[:n]
        extra = n - len(free)
        if extra:
            grow = lambda t, fill: torch.cat([t, torch.full((extra, *t.shape[1:]), fill,  # noqa: E731
                                              dtype=t.dtype, device=t.device)])  # fmt: skip
            for name in ("length", "offset", "prompt_len", "max_bars", "stop_at", "logp", "head"):
                setattr(self, name, grow(getattr(self, name), 0))
            self.done, self.tokens = grow(self.done, True), grow(self.tokens, PAD)
            self.logits = grow(self.logits, 0.0)
            self.seq = grow(self.seq, PAD)
            self.state.extend(self.state.fresh(extra))
            if self.controls is not None:
                self.controls.extend(self.controls.rows([None] * extra))
            if self.draws is not None:
                self.draws.extend(RowDraws([self._default_draw()] * extra, self.device))
        if width > self.seq.shape[1]:
            pad = torch.full((self.batch, width - self.seq.shape[1]), PAD, dtype=torch.long,
                             device=self.device)  # fmt: skip
            self.seq = torch.cat([self.seq, pad], 1)
        rows = torch.cat([free, torch.arange(self.batch - extra, self.batch, device=self.device)])
        self.seq[rows] = PAD
        return rows

    def _default_draw(self) -> RowSampling:
        c = self.config
        return RowSampling(0.0 if c.greedy else c.temperature, c.top_k, c.top_p)

    @torch.inference_mode()
    def drop(self, rows: list[int]) -> None:
        """End rows now (a client that went away): their slots are free for the next add."""
        self.done[rows] = True

    def _cache_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The cache rows of ``rows``: where they are held, else new rows at the cache's end."""
        where = self._held_at()[rows]
        new = where < 0
        if bool(new.any()):
            where[new] = len(self.held) + torch.arange(int(new.sum()), device=self.device)
            self.held = torch.cat([self.held, rows[new]])
        return where

    def _held_at(self) -> torch.Tensor:
        """Every row's row in the cache (-1: not held)."""
        at = torch.full((self.batch,), -1, dtype=torch.long, device=self.device)
        at[self.held] = torch.arange(len(self.held), device=self.device)
        return at

    def _compact(self) -> None:
        """Drop finished rows from the cache once they are a quarter of it, so the model no
        longer computes them (a batch whose rows end at different times)."""
        keep = ~self.done[self.held]
        if 4 * int((~keep).sum()) < max(len(keep), 1):
            return
        index = keep.nonzero().flatten()
        self.cache.select(index)
        if self.guide is not None and self.guide.cache is not None:
            self.guide.cache.select(index)
        self.held = self.held[index]

    def _head(self, ids: torch.Tensor) -> int:
        """With tracks or controls, the length of what comes before the first Bar, which a
        restarted context keeps in front; 0 otherwise, or while no Bar has come."""
        if not self.keep_head:
            return 0
        bars = (ids == self.bar_id).nonzero().flatten()
        return int(bars[0]) if len(bars) else 0

    def _first_offset(self, prompt: torch.Tensor, head: int) -> int:
        """Where a prompt's context starts: 0, or for a prompt longer than a full-attention
        context, a bar line near the middle of its last ``ctx - head`` tokens."""
        if self.window or len(prompt) <= self.ctx:
            return 0
        tail = len(prompt) - (self.ctx - head)
        return tail + restart_point(prompt[tail:], self.bar_id, self.ctx - head)

    def _context(self, ids: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor,
                 heads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Each row's context, right-padded, and its size: the row's first ``head`` tokens
        (once its context has moved past them), then ``ids[offset:length]``."""
        heads = torch.where(offsets > heads, heads, 0)
        sizes = heads + lengths - offsets
        j = torch.arange(int(sizes.max()), device=self.device)
        index = torch.where(j < heads[:, None], j, offsets[:, None] + j - heads[:, None])
        return ids.gather(1, index.clamp(max=ids.shape[1] - 1)), sizes

    def _prefill(self, ids: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor,
                 heads: torch.Tensor):  # fmt: skip
        """Next-token logits (n, V) after each row's context (see :meth:`_context`), and a
        cache holding those contexts (None without the cache)."""
        context, sizes = self._context(ids, offsets, lengths, heads)
        width = context.shape[1]
        if not self.config.use_cache:
            return self._uncached(context, sizes), None
        cache = self.model.new_cache(len(ids), self.ctx)
        ragged = bool((sizes != width).any())
        kwargs = {"lengths": sizes} if ragged else {}
        return self.model(context, cache=cache, last_only=True, **kwargs)[:, -1], cache

    def _uncached(self, context: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """The slow twin of the cache: each row's whole context through the model."""
        width = context.shape[1]
        if bool((sizes == width).all()):
            return self.model(context, last_only=True)[:, -1]
        rows = [self.model(context[i : i + 1, : int(n)], last_only=True)[:, -1]
                for i, n in enumerate(sizes.tolist())]  # fmt: skip
        return torch.cat(rows)

    # -- stepping -----------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        """Pick one token for every row that is not done and advance. Returns (B,) tokens
        (PAD for rows that were already done); rows that end set :attr:`done`."""
        live = ~self.done
        logits = self.next_logits()
        if self.draws is not None:
            tok = self.draws.draw(logits, self.length)
        elif self.config.greedy:
            tok = logits.argmax(-1)
        else:
            tok = _draw(logits, self.config, self.generator)
        self.advance(tok, live)
        return self.tokens

    def next_logits(self) -> torch.Tensor:
        """The logits the next token is drawn from: the grammar mask and EOS gating applied."""
        logits = self.logits
        if self.guide is not None and self.controls is not None:
            logits = self.guide.mix(logits, self.controls.planned)
        if self.config.grammar:
            logits = filters.apply_mask(logits, self.state.mask())
        if self.controls is not None:
            logits = self.controls.apply(logits, self.state)
        if self.config.fill_bars:
            logits = logits.clone() if logits is self.logits else logits
            early = self.state.bars < self.max_bars
            logits[:, EOS] = torch.where(early, NEG_INF, logits[:, EOS])
        return logits

    def advance(self, tok: torch.Tensor, live: torch.Tensor) -> None:
        """Append ``tok`` (B,) to the live rows, end the rows that end, and compute the next
        logits (restarting rows whose context is full)."""
        over = (tok == self.bar_id) & (self.state.bars >= self.max_bars)
        tok = torch.where(live, torch.where(over, EOS, tok), PAD)
        if self.config.best_of > 1:  # the model's own likelihood, before any filter
            logp = torch.log_softmax(self.logits.float(), -1).gather(1, tok[:, None])[:, 0]
            self.logp += torch.where(live, logp, 0.0)
        rows = torch.arange(self.batch, device=self.device)
        at = self.length.clamp(max=self.seq.shape[1] - 1)
        self.seq[rows, at] = torch.where(live, tok, self.seq[rows, at])
        self.length += live.long()
        self.state.update(tok, live)
        if self.controls is not None:
            self.controls.update(tok, live)
        self.done |= live & ((tok == EOS) | (self.length >= self.stop_at))
        self.tokens = tok
        if bool(self.done.all()):
            return
        if self.guide is not None and not bool((self.guide.scale != 1)[~self.done].any()):
            self.guide = None  # no guided row left: the next guided one makes new twins
        restart = ~self.done & (self._sizes() >= self.ctx) if not self.window else None
        if self.config.use_cache:
            self._compact()
            held = self.held
            logits = self.model(tok[held, None], cache=self.cache, last_only=True)[:, -1]
            self.logits[held] = logits.float()
            if self.guide is not None:
                self.guide.step(tok, held)
        if restart is not None and bool(restart.any()):
            self._restart(restart.nonzero().flatten())
        if not self.config.use_cache:
            self.logits = self._uncached_step()
            if self.guide is not None:
                self.guide.recompute(*self._context(self.seq, self.offset, self.length,
                                                    self.head))  # fmt: skip

    def _sizes(self) -> torch.Tensor:
        """Every row's context size (see :meth:`_context`)."""
        return self.length - self.offset + torch.where(self.offset > self.head, self.head, 0)

    def _uncached_step(self) -> torch.Tensor:
        context, sizes = self._context(self.seq, self.offset, self.length, self.head)
        return self._uncached(context, sizes).float()

    def _restart(self, rows: torch.Tensor) -> None:
        """Rows whose context is full keep their last bars (from a bar line near the middle
        of the window, each row its own), after their declarations with tracks, and rebuild
        their cache from there."""
        for r in rows.tolist():
            start = int(self.offset[r])
            head = self._head(self.seq[r, : int(self.length[r])])
            window = self.seq[r, start : int(self.length[r])]
            self.head[r] = head
            self.offset[r] = start + restart_point(window, self.bar_id, self.ctx - head)
        if not self.config.use_cache:
            return
        where = (self.seq[rows], self.offset[rows], self.length[rows], self.head[rows])
        logits, cache = self._prefill(*where)
        at = self._held_at()[rows]  # running rows are always held
        self.cache.put(at, cache)
        self.logits[rows] = logits.float()
        if self.guide is not None:
            self.guide.put(rows, *self.guide.prefill(*self._context(*where)), at=at)

    # -- results ------------------------------------------------------------------------

    def row(self, r: int) -> torch.Tensor:
        """Row ``r``'s ids so far, prompt included."""
        return self.seq[r, : int(self.length[r])]

    def padded(self, rows: list[int] | None = None) -> torch.Tensor:
        """Rows (default: all) as one (n, T) tensor padded with PAD."""
        rows = list(range(self.batch)) if rows is None else rows
        width = int(self.length[rows].max()) if rows else 0
        return self.seq[rows, :width].clone()

    def reorder(self, index: torch.Tensor) -> None:
        """Keep, repeat or reorder rows (beam search): row i becomes old row ``index[i]``."""
        source = self._held_at()[index] if self.cache is not None else None
        for name in ("seq", "length", "offset", "prompt_len", "max_bars", "stop_at", "done",
                     "logp", "logits", "tokens", "head"):  # fmt: skip
            setattr(self, name, getattr(self, name)[index])
        self.state.select(index)
        if self.controls is not None:
            self.controls.select(index)
        if self.draws is not None:
            self.draws.select(index)
        if source is not None:  # rows whose old row was dropped from the cache are done
            self.held = (source >= 0).nonzero().flatten()
            self.cache.select(source[self.held])
        if self.guide is not None:
            self.guide.select(index, None if source is None else source[self.held])


def run(engine: Engine, progress=None) -> None:
    """Step ``engine`` until every row is done, calling ``progress(engine)`` after each step."""
    while not bool(engine.done.all()):
        engine.step()
        if progress is not None:
            progress(engine)


def restart_point(window: torch.Tensor, bar_id: int, ctx: int) -> int:
    """Index in ``window`` of the Bar nearest its middle (within its middle half; else the
    middle itself), to keep the last bars as context."""
    bars = (window == bar_id).nonzero().flatten().tolist()
    candidates = [b for b in bars if ctx // 4 <= b <= 3 * ctx // 4]
    return min(candidates, key=lambda b: abs(b - ctx // 2)) if candidates else ctx // 2


def _draw(logits: torch.Tensor, config: SamplingConfig, generator) -> torch.Tensor:
    """One token per row after temperature, top-k and top-p. (B, V) -> (B,)."""
    logits = filters.top_k(filters.temperature(logits, config.temperature), config.top_k)
    if config.top_p >= 1:
        return filters.gumbel_sample(logits, generator)
    nucleus = filters.top_p_candidates(logits, config.top_p)
    if nucleus is None:  # the candidates hold too little mass: sort whole rows
        return filters.gumbel_sample(filters.top_p_sorted(logits, config.top_p), generator)
    top, ids = nucleus  # draw among the candidates only: (B, K) instead of (B, V)
    return ids.gather(-1, filters.gumbel_sample(top, generator).unsqueeze(-1)).squeeze(-1)


def _per_row(value: int | list[int], n: int) -> list[int]:
    return [value] * n if isinstance(value, int) else list(value)


def _device(model) -> torch.device:
    return next(model.parameters()).device
