"""A trained model is a folder: ``model.safetensors`` plus ``config.json``.

``config.json`` holds the architecture (``arch``; absent means the decoder), the model config,
the tokenizer config and, under ``meta``, the training data fingerprint and the headline
metrics (folders written before ``meta`` existed kept those at the top level; they still load). Generation, evaluation and serving load models from here and never
import training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from aurl.errors import ModelLoadError
from aurl.fileio import atomic_dir
from aurl.models.registry import DEFAULT_ARCH, build_model, model_config
from aurl.tokens import Tokenizer

FORMAT = "aurl-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def _tied(model: torch.nn.Module) -> dict[str, str]:
    """State-dict keys that are the same tensor as an earlier key (a head tied to its
    embedding): ``{later: earlier}``. They are stored once and restored on loading."""
    first: dict[int, str] = {}
    tied = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) in first:
            tied[key] = first[id(value)]
        else:
            first[id(value)] = key
    return tied


@dataclass
class ModelFolder:
    """A loaded model with its tokenizer and the metadata saved beside it."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    meta: dict = field(default_factory=dict)
    path: Path | None = None


def save_model(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    path: str | Path,
    meta: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model`` and its configs to the folder ``path`` atomically (replacing it whole).

    ``dtype=torch.float16`` halves the file (the shipped model); loading casts back to float32.
    """
    tied = _tied(model)
    state = {
        k: v.detach().cpu().to(dtype).contiguous()
        for k, v in model.state_dict().items()
        if k not in tied
    }
    model_fields = model.config.model_dump()
    config = {
        "format": FORMAT,
        "arch": model_fields.get("arch", DEFAULT_ARCH),
        "model": model_fields,
        "tokenizer": tokenizer.to_dict(),
        "meta": meta or {},
    }
    with atomic_dir(path) as tmp:
        (tmp / WEIGHTS).write_bytes(save(state))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return Path(path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> ModelFolder:
    """Load a model folder written by :func:`save_model`.

    Raises:
        ModelLoadError: the folder or one of its files is missing or unreadable.
    """
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise ModelLoadError(f"{path}: not a model folder (needs {CONFIG} and {WEIGHTS})")
    try:
        config = json.loads((path / CONFIG).read_text())
        if config.get("format") != FORMAT:
            raise ModelLoadError(f"{path}: unknown model format {config.get('format')!r}")
        model = build_model(model_config({**config["model"], "arch": config.get("arch")}))
        tokenizer = Tokenizer.from_dict(config["tokenizer"])
        state = {k: v.float() for k, v in load_file(str(path / WEIGHTS)).items()}
        for key, same in _tied(model).items():
            state.setdefault(key, state[same])
        model.load_state_dict(state)
    except ModelLoadError:
        raise
    except Exception as e:  # corrupt JSON, bad weights, wrong shapes
        raise ModelLoadError(f"{path}: cannot load model ({type(e).__name__}: {e})") from e
    meta = config.get("meta")
    if meta is None:  # written before metadata had its own key
        meta = {
            k: v for k, v in config.items() if k not in ("format", "arch", "model", "tokenizer")
        }
    return ModelFolder(model.to(device).eval(), tokenizer, meta, path)
