"""Models: the transformer, its KV cache, and model folders (safetensors + JSON)."""

from aurl.models.folder import ModelFolder, load_model, save_model
from aurl.models.transformer import KVCache, Transformer, TransformerConfig

__all__ = ["KVCache", "ModelFolder", "Transformer", "TransformerConfig", "load_model", "save_model"]
