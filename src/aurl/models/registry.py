"""Which model class each architecture name builds. Model folders and run configs name their
``arch``; everything that builds a model goes through here, so a new architecture is one entry.
"""

from __future__ import annotations

from pydantic import BaseModel
from torch import nn

from aurl.models.transformer import Transformer, TransformerConfig
from aurl.models.vae import VAE, VAEConfig

DEFAULT_ARCH = "decoder"  # what a model folder or config without ``arch`` holds
ARCHS: dict[str, tuple[type[nn.Module], type[BaseModel]]] = {
    "decoder": (Transformer, TransformerConfig),
    "vae": (VAE, VAEConfig),
}


def config_class(arch: str | None) -> type[BaseModel]:
    """The config class of ``arch`` (None: the decoder).

    Raises:
        ValueError: an architecture that does not exist, naming the ones that do.
    """
    name = arch or DEFAULT_ARCH
    if name not in ARCHS:
        raise ValueError(f"unknown model arch {name!r} (known: {', '.join(sorted(ARCHS))})")
    return ARCHS[name][1]


def model_config(data: dict) -> BaseModel:
    """Validate a model section (a dict with an optional ``arch``) into its config class."""
    return config_class(data.get("arch")).model_validate(
        {**data, "arch": data.get("arch") or DEFAULT_ARCH}
    )


def build_model(config: BaseModel) -> nn.Module:
    """A freshly initialised model for ``config`` (its ``arch`` picks the class)."""
    return ARCHS[getattr(config, "arch", DEFAULT_ARCH)][0](config)
