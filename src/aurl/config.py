"""Typed run configs: YAML presets, ``key.sub=value`` overrides, validation with clear errors.

Each package owns its section (``aurl.data.config``, ``aurl.train.config``, the model and
tokenizer configs), and :class:`RunConfig` (``aurl.train.run_config``) composes them; this
module reads, overrides and validates runs' configs, and re-exports the sections.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from aurl.data.config import (
    AugmentConfig,
    CurriculumConfig,
    DataConfig,
    HumanizeAugment,
    InstrumentAugment,
    ScheduleConfig,
    SourceWeight,
    TempoAugment,
    TransposeAugment,
    VelocityAugment,
)
from aurl.errors import ConfigError
from aurl.train.config import TrainConfig
from aurl.train.run_config import RunConfig

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "CurriculumConfig",
    "DataConfig",
    "HumanizeAugment",
    "InstrumentAugment",
    "RunConfig",
    "ScheduleConfig",
    "SourceWeight",
    "TempoAugment",
    "TrainConfig",
    "TransposeAugment",
    "VelocityAugment",
    "dump_config",
    "load_config",
]


# What a resumed run may change: how long it runs, how often it reports, how it stops, how
# fast it goes. Anything else would change the model or the data it has been trained on.
RESUMABLE = (
    "name", "train.max_steps", "train.eval_every", "train.eval_windows", "train.checkpoint_every",
    "train.log_every", "train.threads", "train.device", "train.tensorboard", "train.early_stop",
    "train.anomaly", "train.lr", "train.min_lr", "train.warmup_steps", "train.grad_clip",
    "train.precision", "data.workers", "data.loader_workers", "tune",
)  # fmt: skip


def setting_names(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted setting of ``model`` (sections and leaves), e.g. ``train.early_stop.patience``;
    a section that may be one of several classes (``model``, by arch) has the fields of all."""
    names = []
    for name, info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        names.append(dotted)
        kinds = typing.get_args(info.annotation) or (info.annotation,)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names += [n for n in setting_names(kind, dotted + ".") if n not in names]
    return names


def _unknown(key: str) -> str | None:
    """Why ``key`` names no setting, with the nearest one that exists (None if it exists)."""
    names = setting_names()
    if key in names or key == "model.mode" or key.startswith("tune.space."):
        return None  # the search space names any setting; model.mode spells arch and gan
    near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return "no such setting" + (f"; did you mean {near[0]}?" if near else "")


def _parse_overrides(overrides) -> list[tuple[str, str, str]]:
    """(item, key, raw value) of each ``key.sub=value``; one line for a malformed one."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        if why := _unknown(key.strip()):
            raise ConfigError(f"override {item}: {why}")
        parsed.append((item, key.strip(), value))
    return parsed


def _set_dotted(tree: dict, dotted: str, raw: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def _explain(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {field}: {first['msg']}{got_text}"


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key.sub=value`` overrides, validate.

    Raises:
        ConfigError: missing file, bad YAML, unknown field or bad value (one line).
    """
    tree: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return _validate(tree, _parse_overrides(overrides), where)


MODES = {"transformer": ("decoder", False), "vae": ("vae", False), "vae_gan": ("vae", True)}


def _apply_mode(tree: dict, where: str) -> None:
    """``model.mode: transformer | vae | vae_gan`` is another spelling of ``model.arch``
    (``decoder`` or ``vae``) plus ``train.gan.enabled`` (the discriminator trains only)."""
    model = tree.get("model")
    if not isinstance(model, dict) or "mode" not in model:
        return
    mode = model.pop("mode")
    if mode not in MODES:
        raise ConfigError(f"{where}: model.mode: {mode!r} is not one of {', '.join(MODES)}")
    arch, gan = MODES[mode]
    if model.get("arch", arch) != arch:
        raise ConfigError(f"{where}: model.mode {mode} contradicts model.arch {model['arch']}")
    model["arch"] = arch
    if gan:
        train = tree.setdefault("train", {})
        train.setdefault("gan", {})["enabled"] = True


def _validate(tree: dict, overrides: list[tuple[str, str, str]], where: str) -> RunConfig:
    """Apply the overrides to ``tree`` and validate; an error in an overridden value names
    the override, any other the file."""
    for item, key, value in overrides:
        try:
            _set_dotted(tree, key, value)
        except ConfigError:
            raise ConfigError(
                f"override {item}: {key.rsplit('.', 1)[0]} is not a section"
            ) from None
    _apply_mode(tree, where)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        loc = ".".join(str(p) for p in e.errors()[0]["loc"])
        item = next((i for i, k, _ in overrides if loc == k or loc.startswith(k + ".")), None)
        raise ConfigError(_explain(e, f"override {item}" if item else where)) from None
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def resume_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A run's saved config with the overrides a resumed run may take (see ``RESUMABLE``).

    Raises:
        ConfigError: naming an override that would change the model or the data.
    """
    parsed = _parse_overrides(overrides)
    for item, key, _ in parsed:
        if not any(key == r or key.startswith(r + ".") for r in RESUMABLE):
            raise ConfigError(
                f"override {item}: a resumed run cannot change {key} (it would change the model "
                f"or the data); it can change {', '.join(RESUMABLE)}"
            )
    try:
        tree = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    return _validate(tree, parsed, str(path))


def dump_config(config: RunConfig) -> str:
    """YAML text of ``config``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
