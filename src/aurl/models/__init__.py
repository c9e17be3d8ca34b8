"""Models: the transformer, its KV cache, the architecture registry, and model folders."""

from aurl.models.cache import KVCache
from aurl.models.folder import ModelFolder, ModelLoadError, load_model, save_model
from aurl.models.registry import ARCHS, build_model, config_class, model_config
from aurl.models.transformer import Transformer, TransformerConfig

__all__ = [
    "ARCHS",
    "KVCache",
    "ModelFolder",
    "ModelLoadError",
    "Transformer",
    "TransformerConfig",
    "build_model",
    "config_class",
    "load_model",
    "model_config",
    "save_model",
]
