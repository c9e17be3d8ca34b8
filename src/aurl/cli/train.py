"""The training commands: ``train``, ``finetune``, ``distill`` and ``tune``.

Each loads a run config (a YAML file or a preset name, plus ``key.sub=value`` overrides) and
calls :mod:`aurl.train`; under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

PRESETS = Path(__file__).resolve().parents[1] / "presets"

config_option = click.option(
    "--config", "config_path", default=None,
    help="YAML config (see configs/) or a preset name (finetune). Default: built-in defaults.",
)  # fmt: skip
name_option = click.option("--name", default=None,
                           help="Run name; the run goes to RUNS_DIR/NAME. Default: the config's name.")  # fmt: skip
runs_option = click.option("--runs-dir", default="runs", show_default=True,
                           type=click.Path(file_okay=False), help="Folder holding runs.")  # fmt: skip
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")
overrides_argument = click.argument("overrides", nargs=-1, metavar="[KEY.SUB=VALUE]...")


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _config_path(path: str | None) -> Path | None:
    """A file path, or the packaged preset of that name."""
    if path is None or Path(path).exists() or not (PRESETS / f"{path}.yaml").is_file():
        return None if path is None else Path(path)
    return PRESETS / f"{path}.yaml"


def _report(run_dir: Path, meta: dict) -> None:
    if not meta or not _is_main():
        return
    m, t = meta["metrics"], meta["training"]
    click.echo(
        f"model at {run_dir / 'model'}: {meta['parameters']:,} parameters, step {t['steps']}, "
        f"val NLL {m['val_nll_per_token']:.4f}"
        + (f", test NLL {m['test_nll_per_token']:.4f}" if "test_nll_per_token" in m else "")
    )


@click.command()
@config_option
@name_option
@runs_option
@click.option("--init", "init", default=None,
              help="Start from this model folder's weights (its model and tokenizer replace "
                   "the config's): e.g. a VAE trained on, adversarially, with train.gan.enabled=true.")  # fmt: skip
@click.option("--resume", is_flag=True,
              help="Continue the run from its last checkpoint, exactly. Overrides may extend "
                   "it (train.max_steps=...), but not change its model or data.")  # fmt: skip
@quiet_option
@overrides_argument
def train(config_path, name, runs_dir, init, resume, quiet, overrides) -> None:
    """Train a model from scratch, or resume one with --resume.

    Overrides change single config values, e.g. `train.max_steps=200 model.n_layer=2`.
    The run folder gets config.yaml, metrics.jsonl, tb/ (TensorBoard), checkpoint.pt (for
    resuming) and model/ (the best weights by validation loss, for `aurl generate --model`).
    Under `torchrun --nproc_per_node=N -m aurl train ...` it trains with N processes.
    """
    from aurl.config import load_config, resume_config
    from aurl.train.lm import RUN_CONFIG, train_run

    config = load_config(_config_path(config_path), () if resume else overrides)
    run_dir = Path(runs_dir) / (name or config.name)
    if resume:
        config = resume_config(run_dir / RUN_CONFIG, overrides)
    start = None
    if init is not None and not resume:
        from aurl.models import load_model
        from aurl.paths import resolve_model_path

        start = load_model(resolve_model_path(init))
        # the model's vocabulary; the config's layout of infilling examples
        layout = {"infill_context": config.tokenizer.infill_context}
        tokenizer = start.tokenizer.config.model_copy(update=layout)
        # a VAE from a language model keeps the config's VAE (its decoder starts as the LM)
        lm_to_vae = config.model.arch == "vae" and start.model.config.arch != "vae"
        model = config.model if lm_to_vae else start.model.config
        config = config.model_copy(update={"model": model, "tokenizer": tokenizer})
    meta = train_run(config, run_dir, resume=resume, progress=not quiet, init_from=start)
    _report(run_dir, meta)


@click.command()
@click.argument("source")
@click.option("--model", default=None,
              help="Model folder or run folder to start from. Default: the shipped model.")  # fmt: skip
@click.option("--config", "config_path", default="finetune", show_default=True,
              help="YAML config or preset name for the training settings.")  # fmt: skip
@name_option
@runs_option
@quiet_option
@overrides_argument
def finetune(source, model, config_path, name, runs_dir, quiet, overrides) -> None:
    """Fine-tune a trained model on SOURCE (a folder of MIDI files or a corpus name).

    Keeps the model's shape and tokenizer, starts from its weights, trains with the
    fine-tuning preset (a low learning rate, a short warm-up) and exports RUNS_DIR/NAME/model.
    """
    from aurl.config import load_config
    from aurl.models import load_model
    from aurl.paths import resolve_model_path
    from aurl.train.lm import train_run

    start = load_model(resolve_model_path(model))
    config = load_config(_config_path(config_path), overrides)
    seq_len = min(config.data.seq_len, start.model.config.max_seq_len)
    data = config.data.model_copy(update={"source": source, "sources": [], "seq_len": seq_len})
    config = config.model_copy(update={
        "model": start.model.config, "tokenizer": start.tokenizer.config, "data": data,
    })  # fmt: skip
    run_dir = Path(runs_dir) / (name or config.name)
    _report(run_dir, train_run(config, run_dir, progress=not quiet, init_from=start))


@click.command()
@click.option("--teacher", required=True, help="Model folder or run folder to learn from.")
@config_option
@name_option
@runs_option
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Weight of the teacher's term; the data's cross-entropy gets 1 - alpha.")  # fmt: skip
@click.option("--temperature", type=click.FloatRange(0.1, 100), default=1.0, show_default=True,
              help="Softening of both distributions in the teacher's term.")  # fmt: skip
@quiet_option
@overrides_argument
def distill(teacher, config_path, name, runs_dir, alpha, temperature, quiet, overrides) -> None:
    """Train a (smaller) student from the config on the data and on a teacher's softened
    next-token distribution. The student takes the teacher's tokenizer."""
    from aurl.config import load_config
    from aurl.models import load_model
    from aurl.paths import resolve_model_path
    from aurl.train.lm import train_run

    folder = load_model(resolve_model_path(teacher))
    config = load_config(_config_path(config_path), overrides)
    config = config.model_copy(update={"tokenizer": folder.tokenizer.config})
    run_dir = Path(runs_dir) / (name or config.name)
    meta = train_run(config, run_dir, progress=not quiet, teacher=folder, distill_alpha=alpha,
                     distill_temperature=temperature)  # fmt: skip
    _report(run_dir, meta)
