"""A training run's whole config: every package's section composed (read, overridden and
validated by :mod:`aurl.config`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from aurl.data.config import DataConfig
from aurl.models.registry import model_config
from aurl.models.transformer import TransformerConfig
from aurl.models.vae import VAEConfig
from aurl.tokens import TokenizerConfig
from aurl.train.config import TrainConfig, TuneConfig


class RunConfig(BaseModel):
    """Everything a training run needs; saved beside the run.

    ``model.arch`` picks the model section's class (absent: the decoder); ``tune`` is read
    only by ``aurl tune``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "run"
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: TransformerConfig | VAEConfig = TransformerConfig()
    train: TrainConfig = TrainConfig()
    tune: TuneConfig = TuneConfig()

    @field_validator("model", mode="before")
    @classmethod
    def _model_by_arch(cls, value):
        return model_config(value) if isinstance(value, dict) else value
