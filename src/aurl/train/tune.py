"""Hyperparameter search with Optuna: trials of the language-model recipe.

A trial is the base run config with the values Optuna draws set at their dotted keys, trained
by :func:`aurl.train.lm.train_run` into ``STUDY/trial-NNN/``. Each validation loss is reported
to the trial, and the median rule prunes trials that trail the finished ones. The study lives
in ``STUDY/study.db`` (SQLite), so running the search again continues it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from pydantic import ValidationError

from aurl.errors import ConfigError
from aurl.fileio import atomic_write_text
from aurl.train.config import ParamSpace
from aurl.train.lm import MODEL_DIR, train_run
from aurl.train.loop import DivergedError

if TYPE_CHECKING:
    from aurl.train.run_config import RunConfig

STUDY_DB = "study.db"
TRIALS_MD, TRIALS_CSV = "trials.md", "trials.csv"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # the trials a study's size counts


@dataclass
class TuneResult:
    """What a search left behind.

    Attributes:
        study_dir: the study's folder (``study.db``, ``trials.md``, ``trials.csv``, trials).
        trials: trials finished or pruned, all runs of the study together.
        best_number: the best finished trial (None when none has finished).
        best_params: its values, by dotted setting.
        best_value: its best validation loss.
        best_model: its model folder.
    """

    study_dir: Path
    trials: int
    best_number: int | None = None
    best_params: dict[str, Any] | None = None
    best_value: float | None = None
    best_model: Path | None = None


def trial_dir(study_dir: Path, number: int) -> Path:
    """The run folder of trial ``number``."""
    return Path(study_dir) / f"trial-{number:03d}"


def check_space(config: RunConfig) -> None:
    """Raise :class:`ConfigError` naming the first searched key that is not a setting of
    ``config`` (or is in its ``tune`` section), or whose range Optuna cannot draw from."""
    tree = config.model_dump(mode="json")
    for key, space in config.tune.space.items():
        if key == "tune" or key.startswith("tune."):
            raise ConfigError(f"tune.space.{key}: the search cannot change its own settings")
        node: Any = tree
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"tune.space.{key}: no such setting")
            node = node[part]
        if space.choices is not None:
            continue
        if space.log and space.step is not None:
            raise ConfigError(f"tune.space.{key}: give log or step, not both")
        bounds = (space.low, space.high, space.step or 1)
        if space.integer and not all(float(v).is_integer() for v in bounds):
            raise ConfigError(f"tune.space.{key}: an integer range needs whole low, high, step")


def suggest(trial: Trial, space: dict[str, ParamSpace]) -> dict[str, Any]:
    """The trial's value of each searched setting: categorical for ``choices``, integer when
    ``integer`` is set, float otherwise (``log`` and ``step`` as given)."""
    values = {}
    for key, p in space.items():
        if p.choices is not None:
            values[key] = trial.suggest_categorical(key, p.choices)
        elif p.integer:
            step = int(p.step or 1)
            values[key] = trial.suggest_int(key, int(p.low), int(p.high), step=step, log=p.log)
        else:
            values[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return values


def trial_config(config: RunConfig, values: dict[str, Any], name: str) -> RunConfig:
    """A copy of ``config`` named ``name`` with ``values`` set at their dotted keys.

    Raises:
        ConfigError: the values make an invalid config (naming the first bad field).
    """
    tree = config.model_dump(mode="json")
    tree["name"] = name
    for key, value in values.items():
        *sections, leaf = key.split(".")
        node = tree
        for part in sections:
            node = node[part]
        node[leaf] = value
    try:
        return type(config).model_validate(tree)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"trial {name} ({_params_text(values)}): {field}: {first['msg']}"
        ) from None


def pruning_callback(trial: Trial) -> Callable[[int, dict], None]:
    """An ``on_eval`` for :func:`train_run` that reports the validation loss to ``trial`` and
    ends the run with :class:`optuna.TrialPruned` when the pruner says so."""

    def on_eval(step: int, metrics: dict) -> None:
        trial.report(metrics["val_loss"], step)
        trial.set_user_attr("steps", step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    return on_eval


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())  # fmt: skip


def run_trial(study: optuna.Study, config: RunConfig, study_dir: Path, progress: bool = False,
              log: Callable[[str], None] = print) -> TrialState:  # fmt: skip
    """Ask ``study`` for a trial, train it, tell the study how it went, and log one line.

    A trial whose training diverges fails without ending the search; any other error fails
    the trial and is raised.
    """
    trial = study.ask()
    values = suggest(trial, config.tune.space)
    run_dir = trial_dir(study_dir, trial.number)
    head = f"trial {trial.number}: {_params_text(values)} ->"
    try:
        cfg = trial_config(config, values, f"{config.name}-{run_dir.name}")
        meta = train_run(cfg, run_dir, progress=progress, on_eval=pruning_callback(trial),
                         log=log)  # fmt: skip
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        log(f"{head} pruned at step {trial.user_attrs.get('steps')}")
        return TrialState.PRUNED
    except DivergedError as e:
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=TrialState.FAIL)
        log(f"{head} failed: {e}")
        return TrialState.FAIL
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    value = float(meta["metrics"]["val_nll_per_token"])
    trial.set_user_attr("steps", meta["training"].get("total_steps"))
    study.tell(trial, value)
    log(f"{head} val loss {value:.4f}")
    return TrialState.COMPLETE


def open_study(study_dir: Path, name: str, seed: int, startup_trials: int,
               warmup_steps: int) -> optuna.Study:  # fmt: skip
    """The study ``name`` stored in ``study_dir/study.db``, created when absent.

    The TPE sampler is seeded with ``seed`` plus the trials the study already holds, so a
    continued study does not draw its first trials again.
    """
    study_dir.mkdir(parents=True, exist_ok=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                         n_warmup_steps=warmup_steps)  # fmt: skip
    storage = f"sqlite:///{study_dir / STUDY_DB}"
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                pruner=pruner, load_if_exists=True)  # fmt: skip
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def tune(config: RunConfig, trials: int, study_dir: str | Path, name: str | None = None,
         progress: bool = False, log: Callable[[str], None] = print) -> TuneResult:  # fmt: skip
    """Search ``config.tune.space`` until the study holds ``trials`` finished or pruned trials.

    Args:
        config: the base run config; its ``tune`` section says what to search and how.
        trials: the study's size in all, counting trials of earlier runs.
        study_dir: the study's folder: ``study.db``, ``trial-NNN/`` runs, ``trials.md`` and
            ``trials.csv`` (rewritten at the end).
        name: the study's name in its database (default: ``<config name>-tune``).
        progress: show each trial's progress bar.
        log: where the one-line report of each trial and the best trial go.

    Raises:
        ConfigError: an empty space, a searched key that is not a setting, or a trial's values
            that make an invalid config.
    """
    study_dir, tc = Path(study_dir), config.tune
    if not tc.space:
        raise ConfigError("tune.space is empty: nothing to search")
    check_space(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_dir, name or f"{config.name}-tune", tc.seed, tc.startup_trials,
                       tc.warmup_evals * config.train.eval_every)  # fmt: skip
    done = len(study.get_trials(deepcopy=False, states=COUNTED))
    if done >= trials:
        log(f"{study_dir}: the study has {done} trials already (asked for {trials})")
    try:
        for _ in range(trials - done):  # a failed trial is not retried in this run
            run_trial(study, config, study_dir, progress, log)
    finally:
        write_tables(study, study_dir)  # the trials so far, even when a trial raised
    return _result(study, study_dir, log)


def _result(study: optuna.Study, study_dir: Path, log: Callable[[str], None]) -> TuneResult:
    counted = study.get_trials(deepcopy=False, states=COUNTED)
    result = TuneResult(study_dir, len(counted))
    if not any(t.state == TrialState.COMPLETE for t in counted):
        log(f"no trial finished; see {study_dir / TRIALS_MD}")
        return result
    best = study.best_trial
    result.best_number, result.best_params, result.best_value = best.number, best.params, best.value
    result.best_model = trial_dir(study_dir, best.number) / MODEL_DIR
    log(f"best: trial {best.number} ({_params_text(best.params)}), val loss {best.value:.4f}; "
        f"model at {result.best_model}")  # fmt: skip
    return result


def _row(trial: FrozenTrial, keys: list[str]) -> list[str]:
    """number, state, each param, val loss, steps of one trial."""
    losses = list(trial.intermediate_values.values())
    loss = trial.value if trial.state == TrialState.COMPLETE else min(losses, default=None)
    steps = trial.user_attrs.get("steps")
    params = [_cell(trial.params.get(k)) for k in keys]
    return [str(trial.number), trial.state.name.lower(), *params, _cell(loss),
            "" if steps is None else str(steps)]  # fmt: skip


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def write_tables(study: optuna.Study, study_dir: Path) -> None:
    """Write every trial of ``study`` to ``trials.md`` (a Markdown table) and ``trials.csv``.

    A pruned trial's val loss is the best it reported before it was stopped.
    """
    all_trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys(k for t in all_trials for k in t.params))
    header = ["number", "state", *keys, "val_loss", "steps"]
    rows = [_row(t, keys) for t in all_trials]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    atomic_write_text(study_dir / TRIALS_CSV, out.getvalue())
    lines = [f"# Study {study.study_name}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    atomic_write_text(study_dir / TRIALS_MD, "\n".join(lines) + "\n")
