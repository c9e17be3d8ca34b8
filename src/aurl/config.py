"""Typed run configs: YAML presets, ``key.sub=value`` overrides, validation with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aurl.models.transformer import TransformerConfig
from aurl.tokens import TokenizerConfig


class ConfigError(Exception):
    """A config file or override that cannot be used; the message names the field."""


class DataConfig(BaseModel):
    """Which corpus, and how training windows are cut from it."""

    model_config = ConfigDict(extra="forbid")

    source: str = "bach"  # "bach" or a folder of MIDI files
    seq_len: int = Field(512, ge=8, le=65536)
    transpose: int = Field(6, ge=0, le=24)  # largest random transposition, semitones
    workers: int = Field(2, ge=1, le=256)  # processes for preparing
    loader_workers: int = Field(0, ge=0, le=64)  # DataLoader workers while training


class TrainConfig(BaseModel):
    """The optimisation loop."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, ge=1)
    max_steps: int = Field(1000, ge=1)
    lr: float = Field(1e-3, gt=0, le=1)
    min_lr: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, gt=0, lt=1)
    beta2: float = Field(0.95, gt=0, lt=1)
    grad_clip: float = Field(1.0, ge=0)
    eval_every: int = Field(100, ge=1)
    eval_windows: int = Field(0, ge=0)  # 0: the whole validation split
    checkpoint_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 1337
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int = Field(0, ge=0)  # torch CPU threads; 0 keeps torch's default


class RunConfig(BaseModel):
    """Everything a training run needs; saved beside the run."""

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: TransformerConfig = TransformerConfig()
    train: TrainConfig = TrainConfig()


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
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value")
        _set_dotted(tree, key.strip(), value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_explain(e, where)) from None
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def dump_config(config: RunConfig) -> str:
    """YAML text of ``config``."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
