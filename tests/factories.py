"""Debug-size models and configs shared by the tests (seconds on a CPU, seeded)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aurl.config import RunConfig, load_config
from aurl.models import build_model, config_class
from aurl.tokens import Tokenizer

TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"


def debug_model(arch: str = "decoder", seed: int = 0, **shape) -> nn.Module:
    """A freshly initialised model of ``arch`` in eval mode: 2 layers, 2 heads, 32 wide,
    context 256 and the default tokenizer's vocabulary unless ``shape`` says otherwise."""
    fields = {"vocab_size": Tokenizer().vocab_size, "n_layer": 2, "n_head": 2, "n_embd": 32,
              "max_seq_len": 256} | shape  # fmt: skip
    torch.manual_seed(seed)
    return build_model(config_class(arch)(arch=arch, **fields)).eval()


def tiny_config(corpus: Path | str, *overrides: str) -> RunConfig:
    """The tiny preset on ``corpus``, quick to evaluate and without TensorBoard."""
    return load_config(TINY, [f"data.source={corpus}", "train.eval_windows=4",
                              "train.tensorboard=false", *overrides])  # fmt: skip
