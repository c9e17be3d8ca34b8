"""The ``tune`` command: hyperparameter search over a run config's ``tune.space``."""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from aurl.cli.train import _config_path, overrides_argument, quiet_option, runs_option


def _check_keys(config, where: str) -> None:
    """One line naming the first searched key that is not a setting of ``config``."""
    from aurl.config import ConfigError, setting_names

    if not config.tune.space:
        raise ConfigError(f"{where}: tune.space is empty: nothing to search")
    names = set(setting_names()) | set(setting_names(type(config.model), "model."))
    names = {n for n in names if n != "tune" and not n.startswith("tune.")}
    for key in config.tune.space:
        if key not in names:
            near = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"{where}: tune.space.{key}: no such setting{hint}")


@click.command()
@click.option("--config", "config_path", default=None,
              help="YAML config with a tune.space (see configs/tune-tiny.yaml).")  # fmt: skip
@click.option("--trials", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="Trials in the study in all, counting those of earlier runs.")  # fmt: skip
@click.option("--name", default=None,
              help="Study name; the study goes to RUNS_DIR/NAME. "
                   "Default: the config's name plus -tune.")  # fmt: skip
@runs_option
@quiet_option
@overrides_argument
def tune(config_path, trials, name, runs_dir, quiet, overrides) -> None:
    """Search hyperparameters with Optuna over the config's `tune.space`.

    Each trial is the config (with the overrides) plus the values drawn for the searched
    settings, trained into RUNS_DIR/NAME/trial-NNN/. Trials that trail the median of the
    finished ones at the same step are pruned. The study is kept in RUNS_DIR/NAME/study.db:
    running the command again continues it up to --trials trials in all. At the end,
    trials.md and trials.csv list every trial, and the best trial's model folder is printed
    (use it with `aurl generate --model`).

    Example: `aurl tune --config configs/tune-tiny.yaml --trials 10 data.source=my_midi/`.
    """
    from aurl.config import load_config
    from aurl.train.tune import tune as run_tune

    config = load_config(_config_path(config_path), overrides)
    _check_keys(config, config_path or "config")
    name = name or f"{config.name}-tune"
    run_tune(config, trials, Path(runs_dir) / name, name=name, progress=not quiet, log=click.echo)
