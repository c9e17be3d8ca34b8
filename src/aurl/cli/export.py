"""``aurl export``: a model folder to ONNX graphs with an explicit KV cache (optionally INT8),
for ``aurl generate --backend onnx``. Needs the ``onnx`` extra: ``pip install -e '.[onnx]'``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("model")
@click.option("--onnx", "onnx_dir", type=click.Path(file_okay=False), default=None,
              help="Folder to write the export to (new, empty, or an earlier export); default: "
                   "the user cache, where `aurl generate` finds it.")  # fmt: skip
@click.option("--int8", is_flag=True,
              help="INT8 weights (dynamic quantization): smaller, less exact.")  # fmt: skip
def export(model: str, onnx_dir: str | None, int8: bool) -> None:
    """Export MODEL (a model folder, a run folder or a shipped model's name) to ONNX: a
    prefill graph and a one-step graph over a KV cache the caller keeps, plus the model's
    config. Prints what it wrote and how far its logits are from PyTorch's on a sample.

    With no --onnx folder it goes to the user cache (or with --onnx MODEL/onnx into the
    model folder), and from then on `aurl generate --model MODEL` runs it with onnxruntime
    (the auto backend: an export is used only while it matches the model's weights). Any
    other folder: `aurl generate --model DIR --backend onnx`.
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ValueError(f"aurl export needs {e.name}: pip install -e '.[onnx]'") from e
    from aurl.export.locate import default_export_dir
    from aurl.export.onnx import export_onnx
    from aurl.paths import resolve_model_path

    path = resolve_model_path(model)
    report = export_onnx(path, onnx_dir or default_export_dir(path), int8=int8)
    for name in report["files"]:
        size = Path(name).stat().st_size
        click.echo(f"wrote {name} ({size / 2**20:.1f} MiB)" if size > 2**16 else f"wrote {name}")
    kind = "INT8 weights" if int8 else "float32"
    click.echo(f"max logit difference against PyTorch on a sample: {report['onnx_max_diff']:.2e} "
               f"({kind}; the traced float32 math: {report['twin_max_diff']:.2e})")  # fmt: skip
