"""The train section of a run config: the optimisation loop."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EarlyStopConfig(BaseModel):
    """Stop when the validation loss has not improved by ``min_delta`` in ``patience``
    evaluations (``patience: 0``: never). The best model stays exported."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0)


class AnomalyConfig(BaseModel):
    """Bad steps: a loss or gradient norm that is not finite, or a gradient norm over
    ``spike_factor`` times the median of the last ``window`` good ones (0: spikes allowed).
    A bad step is skipped; after ``rollback_after`` in a row the run goes back to its last
    checkpoint with the learning rate multiplied by ``lr_factor``, at most ``max_rollbacks``
    times before it stops with an error."""

    model_config = ConfigDict(extra="forbid")

    spike_factor: float = Field(10.0, ge=0)
    window: int = Field(100, ge=2, le=100_000)
    rollback_after: int = Field(3, ge=1)
    lr_factor: float = Field(0.5, gt=0, le=1)
    max_rollbacks: int = Field(5, ge=0)


class VAETrainConfig(BaseModel):
    """The latent model's training terms: the KL weight ``beta`` and its schedule
    (``constant``; ``linear`` from 0 over ``beta_warmup`` steps; ``cyclical``: that rise every
    ``beta_cycle`` steps), free bits per latent dimension, and token dropout (the share of
    the decoder's input tokens replaced by PAD, so it must lean on the latents)."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(1.0, ge=0, le=100)
    beta_schedule: Literal["constant", "linear", "cyclical"] = "linear"
    beta_warmup: int = Field(200, ge=0)
    beta_cycle: int = Field(0, ge=0)
    free_bits: float = Field(0.1, ge=0, le=10)
    token_dropout: float = Field(0.2, ge=0, lt=1)


class GANTrainConfig(BaseModel):
    """The VAE-GAN mode of a VAE (``enabled``): a multi-scale discriminator of this shape with
    its own optimizer (learning rate ``disc_lr`` times the schedule's), whose adversarial and
    feature-matching terms join the VAE's with these weights, rising from 0 over ``warmup``
    steps."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    adversarial: float = Field(0.1, ge=0, le=100)
    matching: float = Field(1.0, ge=0, le=100)
    warmup: int = Field(200, ge=0)
    disc_lr: float = Field(1.0, gt=0, le=100)
    disc_layers: int = Field(2, ge=1, le=64)
    disc_heads: int = Field(4, ge=1, le=64)
    disc_embd: int = Field(128, ge=8, le=8192)


class TrainConfig(BaseModel):
    """The optimisation loop.

    ``batch_size`` is the windows of one micro-batch on one process: a step sees
    ``batch_size * grad_accum * processes`` windows, and the schedule counts steps.
    """

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1, le=4096)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
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
    seed: int = Field(1337, ge=0, lt=2**63)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int = Field(0, ge=0, le=1024)  # torch CPU threads; 0 keeps torch's default
    tensorboard: bool = True  # event files under RUN/tb/ beside metrics.jsonl
    early_stop: EarlyStopConfig = EarlyStopConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    vae: VAETrainConfig = VAETrainConfig()  # read when model.arch is vae
    gan: GANTrainConfig = GANTrainConfig()  # the VAE-GAN mode of a vae


class ParamSpace(BaseModel):
    """One searched setting: ``choices``, or a range ``low``..``high`` (``log`` for a
    log-uniform draw, ``step`` for a grid; integers when all given bounds are integers)."""

    model_config = ConfigDict(extra="forbid")

    choices: list[int | float | str | bool] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @model_validator(mode="after")
    def _choices_or_range(self):
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("give choices, or low < high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class TuneConfig(BaseModel):
    """Hyperparameter search with Optuna (``aurl tune``): TPE over ``space`` (dotted
    settings, e.g. ``train.lr: {low: 1e-4, high: 1e-2, log: true}``), trials pruned by the
    median rule on validation loss after ``warmup_evals`` evaluations, once
    ``startup_trials`` trials have finished."""

    model_config = ConfigDict(extra="forbid")

    space: dict[str, ParamSpace] = {}
    seed: int = Field(0, ge=0, lt=2**32)
    startup_trials: int = Field(2, ge=0)
    warmup_evals: int = Field(1, ge=0)
