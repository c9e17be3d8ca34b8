"""``aurl serve``: the HTTP API and the web studio on uvicorn."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every "
                   "network the machine is on).")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--model", default=None,
              help="Default model: a shipped one (many-small, the default) or a run under --runs by name.")  # fmt: skip
@click.option("--runs", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Folder of training runs whose models requests may name.")  # fmt: skip
@click.option("--no-batching", is_flag=True,
              help="One generation at a time instead of one shared batch (for comparison).")  # fmt: skip
@click.option("--max-bars", type=click.IntRange(1, 512), default=64, show_default=True)
@click.option("--max-num", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--max-rows", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Rows of the shared batch; requests wait for room beyond.")  # fmt: skip
@click.option("--request-seconds", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, help="Generation stops after this long (pieces come back as they are).")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 512), default=None,
              help="CPU threads (default: $AURL_THREADS, else the cores that are idle now).")  # fmt: skip
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes that analyse uploads for /analyze (default: one per core; 0: "
                   "in the server's process).")  # fmt: skip
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True
)
@click.option("--backend", type=click.Choice(["auto", "torch"]), default="auto", show_default=True,
              help="auto: onnxruntime on the CPU for a model with an export of exactly its "
                   "weights (the shipped ones make theirs), else PyTorch.")  # fmt: skip
def serve(host: str, port: int, model: str | None, runs: str, no_batching: bool, max_bars: int,
          max_num: int, max_rows: int, request_seconds: float, threads: int | None,
          workers: int | None, device: str, backend: str) -> None:  # fmt: skip
    """Serve the HTTP API (OpenAPI docs at /docs) and the web studio (at /).

    Models are named, never given as paths: the shipped ones and the runs under --runs.
    Concurrent generation requests share one batch of the model.
    """
    import os

    import uvicorn

    from aurl.serve.app import create_app
    from aurl.serve.limits import Limits
    from aurl.serve.models import Models

    if max_num > max_rows:
        raise click.BadParameter(f"{max_num} pieces cannot fit a batch of {max_rows} rows",
                                 param_hint="--max-num")  # fmt: skip
    models = Models(runs, model, device, threads, backend)
    models.get()  # load the default model now, so the first request does not wait for it
    limits = Limits(max_bars=max_bars, max_num=max_num, max_rows=max_rows,
                    request_seconds=request_seconds)  # fmt: skip
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    app = create_app(models, limits, batching=not no_batching, workers=workers)
    app.state.server.workers.start()
    click.echo(f"aurl: serving {models.default} at http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
