"""The HTTP API: FastAPI over :mod:`aurl.api`, generation through the shared batch.

Every failure a client can cause is a 4xx with ``{"error": "<one line>"}``: a body that does
not validate (422), a field that is not base64 or not MIDI (400), an unknown model (404), a
body or file over the limits (413), a control value the model does not take (400).
Nothing a client sends is written to disk: files are read from memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aurl import __version__
from aurl.api import TOKENS_PER_BAR_LIMIT, Generator, Piece
from aurl.generate.control_names import control_choices
from aurl.generate.draws import RowSampling
from aurl.generate.guidance_default import guidance_for, steer_for
from aurl.generate.sampler import SamplingConfig, pad_rows
from aurl.generate.stream import bar_seconds
from aurl.models.vae import VAE
from aurl.serve.batcher import Batcher, Job
from aurl.serve.limits import Limits
from aurl.serve.models import Models, UnknownModel
from aurl.serve.payload import bar_notes, bar_ticks, midi_base64, piece_out
from aurl.serve.schemas import (
    GenerateRequest,
    HarmonizeRequest,
    InfillRequest,
    MidiRequest,
    PieceOut,
    PiecesOut,
)
from aurl.serve.studio import mount_studio
from aurl.serve.upload import PayloadError, midi_from_base64
from aurl.serve.workers import Workers


class Server:
    """The state behind the routes: models, one batcher per transformer, the limits, the
    analysis workers."""

    def __init__(self, models: Models, limits: Limits, batching: bool, workers: int = 0):
        self.models, self.limits, self.batching = models, limits, batching
        self.workers = Workers(workers)
        self.batchers: dict[str, Batcher] = {}
        self.fill_lock = asyncio.Lock()  # infilling and harmonizing run one at a time

    def batcher(self, name: str, gen: Generator) -> Batcher:
        if name not in self.batchers:
            self.batchers[name] = Batcher(gen.model, gen.tokenizer.vocab, self.limits.max_rows,
                                          self.batching)  # fmt: skip
        return self.batchers[name]

    async def generator(self, name: str | None) -> tuple[str, Generator]:
        name = name or self.models.default
        return name, await run_in_threadpool(self.models.get, name)

    def check_counts(self, bars: int, num: int) -> None:
        lim = self.limits
        if bars > lim.max_bars:
            raise PayloadError(f"bars: at most {lim.max_bars} on this server, got {bars}")
        if num > lim.max_num:
            raise PayloadError(f"num: at most {lim.max_num} on this server, got {num}")

    def job(self, req: GenerateRequest, gen: Generator, on_bar=None) -> tuple[Job, int]:
        """A request's rows as a batcher job, and the bars its prompt holds (CPU work: call
        it off the event loop)."""
        self.check_counts(req.bars, req.num)
        prompt, taken = None, 0
        if req.prompt is not None:
            score = self.midi(req.prompt, "prompt")
            prompt, taken = gen.score_prompt(score, req.prompt_bars)
        request = req.controls.request()
        batch, plan = gen.start_ids(req.bars, req.num, prompt, request)
        seed = req.seed if req.seed is not None else random.randrange(2**31)
        samplings = [RowSampling(req.temperature, req.top_k, req.top_p, seed + i)
                     for i in range(req.num)]  # fmt: skip
        deadline = time.monotonic() + self.limits.request_seconds
        steer = steer_for(req.steer, request)
        return Job(list(batch), taken + req.bars, req.bars * TOKENS_PER_BAR_LIMIT,
                   [plan] * req.num, samplings, deadline, on_bar, taken,
                   guidance_for(req.guidance, request, steer), steer), taken  # fmt: skip

    def midi(self, text: str, field: str):
        """The score of a base64 MIDI field, within this server's limits."""
        return midi_from_base64(text, field, self.limits.max_upload_bytes,
                                self.limits.max_piece_quarters)  # fmt: skip

    def close(self) -> None:
        for b in self.batchers.values():
            b.close()
        self.workers.close()


def create_app(models: Models | None = None, limits: Limits | None = None,
               batching: bool = True, studio: bool = True, workers: int = 0) -> FastAPI:  # fmt: skip
    """The application: ``models`` (default: the shipped ones and ``runs/``), ``limits``
    (default: :class:`Limits`), ``batching`` off serves one generation at a time,
    ``workers`` analysis processes (0: analyse on the server's thread pool)."""
    server = Server(models or Models(), limits or Limits(), batching, workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.close()

    app = FastAPI(title="Aurl", version=__version__, lifespan=lifespan,
                  description="Symbolic music generation: generate, continue, infill, "
                              "harmonize, analyze and render MIDI.")  # fmt: skip
    app.state.server = server
    _errors(app, server.limits)
    _routes(app, server)
    if studio:
        mount_studio(app)
    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message.splitlines()[0] if message else "error"}, status)


class BodyCap:
    """ASGI middleware: a body declared over ``limit`` bytes gets a 413 before it is read; a
    body sent without a length is cut off (as a disconnect) once it passes the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.limit):
            response = _error(413, f"request body over the limit of {self.limit} bytes")
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            return {"type": "http.disconnect"} if seen > self.limit else message

        return await self.app(scope, counted, send)


def _errors(app: FastAPI, limits: Limits) -> None:
    app.add_middleware(BodyCap, limit=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(PayloadError)
    async def payload(request: Request, exc: PayloadError):
        return _error(exc.status, str(exc))

    @app.exception_handler(UnknownModel)
    async def unknown(request: Request, exc: UnknownModel):
        return _error(404, str(exc))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # a bug: one line, no traceback
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _routes(app: FastAPI, server: Server) -> None:
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info(model: str | None = None) -> dict:
        """The models, the controls ``model`` (default: the server's) takes, the limits."""
        name, gen = await server.generator(model)
        return {"version": __version__, "models": server.models.names(), "default": name,
                "loaded": list(server.models.loaded), "controls": control_choices(
                    gen.tokenizer.vocab), "limits": server.limits.as_dict(),
                "batching": server.batching,
                "batch": {n: {"live_rows": b.live_rows, "steps": b.steps}
                          for n, b in server.batchers.items()}}  # fmt: skip

    @app.post("/generate", response_model=PiecesOut)
    async def generate(req: GenerateRequest) -> PiecesOut:
        """New pieces, or continuations of ``prompt``, under the controls."""
        name, gen = await server.generator(req.model)
        t0 = time.perf_counter()
        if isinstance(gen.model, VAE):
            server.check_counts(req.bars, req.num)
            result = await run_in_threadpool(gen.generate, req.bars, req.num, SamplingConfig(
                req.temperature, req.top_k, req.top_p), req.seed)  # fmt: skip
            return _pieces(result, name, req.with_notes)
        job, taken = await run_in_threadpool(server.job, req, gen)
        rows = await asyncio.wrap_future(server.batcher(name, gen).submit(job))
        out = pad_rows([_tensor(r) for r in rows])
        tempo = req.controls.tempo
        result = gen.collect(out, len(job.prompts[0]), time.perf_counter() - t0,
                             taken + req.bars, tempo)  # fmt: skip
        return _pieces(result, name, req.with_notes, job.timed_out)

    @app.post("/generate/stream")
    async def stream(req: GenerateRequest, request: Request) -> StreamingResponse:
        """Server-Sent Events: one ``bar`` event per finished bar of each piece (its notes and
        the MIDI so far), then ``done``."""
        name, gen = await server.generator(req.model)
        if isinstance(gen.model, VAE):
            raise PayloadError(f"model {name}: streaming needs a transformer model")
        loop, events = asyncio.get_running_loop(), asyncio.Queue()
        on_bar = lambda *event: loop.call_soon_threadsafe(events.put_nowait, event)  # noqa: E731
        job, taken = await run_in_threadpool(server.job, req, gen, on_bar)
        server.batcher(name, gen).submit(job)
        return StreamingResponse(_sse(gen, job, events, req, request),
                                 media_type="text/event-stream")  # fmt: skip

    @app.post("/infill", response_model=PiecesOut)
    async def infill(req: InfillRequest) -> PiecesOut:
        """Bars (and optionally tracks) of a piece regenerated, the rest kept note for note."""
        name, gen = await server.generator(req.model)
        server.check_counts(1, req.num)
        score = server.midi(req.midi, "midi")
        sampling, request = _fill_sampling(req)
        async with server.fill_lock:
            result = await run_in_threadpool(gen.infill_score, score, req.bars, req.tracks,
                                             req.num, sampling, req.seed, request)  # fmt: skip
        return _pieces(result, name, req.with_notes)

    @app.post("/harmonize", response_model=PiecesOut)
    async def harmonize(req: HarmonizeRequest) -> PiecesOut:
        """Alto, tenor and bass under a one-track melody (which comes back note for note)."""
        name, gen = await server.generator(req.model)
        server.check_counts(1, req.num)
        score = server.midi(req.midi, "midi")
        if len(score.tracks) > 1:
            raise PayloadError(f"midi: a melody is one track, this file has {len(score.tracks)}")
        sampling, request = _fill_sampling(req)
        async with server.fill_lock:
            result = await run_in_threadpool(gen.harmonize_score, score, req.num, sampling,
                                             req.seed, request)  # fmt: skip
        return _pieces(result, name, req.with_notes)

    @app.post("/notes", response_model=PieceOut)
    async def notes(req: MidiRequest) -> PieceOut:
        """A MIDI file as the studio draws it: its tracks, bar lines and notes."""
        score = server.midi(req.midi, "midi")
        seconds = float(score.to("second").end())
        piece = Piece(np.zeros(0, np.int64), score, len(bar_ticks(score)), score.note_num(),
                      seconds)  # fmt: skip
        return piece_out(piece, with_notes=True)

    @app.post("/analyze")
    async def analyze(req: MidiRequest) -> Response:
        """Key, chords, cadences, form and melody of a piece (as `aurl analyze` writes)."""
        lim = server.limits
        status, text = await server.workers.analyze(req.midi, lim.max_upload_bytes,
                                                    lim.max_piece_quarters)  # fmt: skip
        if status != 200:
            return _error(status, text)
        return Response(text, media_type="application/json")  # JSON text from the worker

    @app.post("/render", response_class=Response,
              responses={200: {"content": {"audio/wav": {}}}})  # fmt: skip
    async def render(req: MidiRequest) -> Response:
        """The piece as 16-bit stereo WAV, synthesized with a General MIDI SoundFont."""
        score = server.midi(req.midi, "midi")
        seconds = score.to("second").end()
        if seconds > server.limits.max_render_seconds:
            raise PayloadError(f"midi: {seconds:.0f} s long, over the limit of "
                               f"{server.limits.max_render_seconds:.0f} s to render", 413)  # fmt: skip
        return Response(await run_in_threadpool(_wav, score), media_type="audio/wav")


async def _sse(gen: Generator, job: Job, events: asyncio.Queue, req: GenerateRequest,
               request: Request):  # fmt: skip
    """The events of a streaming request; a client that goes away frees its rows."""
    vocab, tempo, left = gen.tokenizer.vocab, req.controls.tempo, len(job.prompts)
    try:
        while left:
            future = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({future}, timeout=1.0)
            if not done:
                future.cancel()
                if await request.is_disconnected():
                    return
                if job.future.done() and job.future.exception() is not None:
                    yield _event("error", {"error": str(job.future.exception())})
                    return
                continue
            row, bar, ids, last = future.result()
            left -= last
            score = gen.decode(ids, tempo)
            lengths = bar_seconds(ids, vocab)
            since = float(np.sum(lengths[:-1])) if lengths else 0.0
            yield _event("bar", {"piece": row, "bar": bar, "last": bool(last),
                                 "notes": bar_notes(score, since), "midi": midi_base64(score),
                                 "seconds": round(lengths[-1], 3) if lengths else 0.0})  # fmt: skip
        yield _event("done", {"pieces": len(job.prompts), "timed_out": job.timed_out})
    finally:
        job.cancel()


def _event(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


def _tensor(ids: np.ndarray):
    import torch

    return torch.as_tensor(ids, dtype=torch.long)


def _fill_sampling(req: InfillRequest | HarmonizeRequest):
    """An infill or harmonize request's sampling settings and its controls."""
    request = req.controls.request()
    guidance = guidance_for(req.guidance, request)
    steer = steer_for(req.steer, request, filling=True)
    return SamplingConfig(req.temperature, req.top_k, req.top_p, guidance=guidance,
                          steer=steer), request  # fmt: skip


def _pieces(result, name: str, with_notes: bool, timed_out: bool = False) -> PiecesOut:
    return PiecesOut(pieces=[piece_out(p, timed_out, with_notes) for p in result.pieces],
                     new_tokens=result.new_tokens, model=name,
                     tokens_per_second=round(result.tokens_per_second, 1))  # fmt: skip


def _wav(score, sample_rate: int = 44100) -> bytes:
    from aurl.render.audio import render_wav, wav_bytes

    return wav_bytes(render_wav(score, sample_rate), sample_rate)
