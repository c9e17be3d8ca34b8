"""Training runs: corpus -> windows -> model -> train_loop -> model folder.

``LMTask`` trains a next-token model on the data (``ce``) and, given a teacher, on the
teacher's softened distribution too (``distill``). ``train_run`` sets a run up from its
config, in one process or as one rank of a ``torchrun`` job, with the task its model's arch
calls for: this one for the decoder, :class:`~aurl.train.vae.VAETask` for a VAE, and
:class:`~aurl.train.vae_gan.VAEGANTask` when ``train.gan.enabled``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import yaml
from torch import nn

from aurl.data.prepare import Dataset, prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.data.windows import SegmentWindows, WeightedWindows, WindowDataset, fixed_segments
from aurl.device import pick_device
from aurl.errors import ConfigError
from aurl.evaluate.latent import segment_metrics
from aurl.evaluate.likelihood import nll_per_token, test_nll
from aurl.fileio import atomic_write_text
from aurl.generate.sampler import SamplingConfig, sample
from aurl.losses import distillation, next_token_cross_entropy
from aurl.models import ModelFolder, build_model, load_model, save_model
from aurl.models.discriminator import Discriminator, DiscriminatorConfig
from aurl.models.transformer import Transformer
from aurl.models.vae import VAE
from aurl.render import piano_roll
from aurl.tokens import BOS, PAD, Tokenizer, TokenType
from aurl.tokens.controls import style_index
from aurl.train import distributed as dd
from aurl.train.checkpoint import CHECKPOINT
from aurl.train.config import TrainConfig
from aurl.train.feed import BatchFeed
from aurl.train.loop import train_loop
from aurl.train.precision import check_precision
from aurl.train.task import Preview, Task, TokenTask
from aurl.train.vae import VAETask, latent_attributes
from aurl.train.vae_gan import VAEGANTask

if TYPE_CHECKING:
    from aurl.train.run_config import RunConfig

RUN_CONFIG = "config.yaml"
MODEL_DIR = "model"
PREVIEW_BARS, PREVIEW_TOKENS = 4, 384
VAE_EVAL_SEGMENTS = 64  # held-out segments a VAE is measured on when eval_windows is 0


class LMTask(TokenTask):
    """Next-token prediction, optionally distilled from a teacher.

    Args:
        model: the model trained (its ``forward(ids)`` gives logits).
        cfg: the train section (optimizer settings).
        device: where batches go.
        evaluate: validation metrics of the (unwrapped) model.
        export: saves the model with the given meta (``metrics``, ``progress``).
        tokenizer: for previews (decode, grammar).
        teacher: a frozen model with the same vocabulary; adds the ``distill`` term.
        alpha, temperature: the distillation term's weight (``ce`` gets ``1 - alpha``) and
            softening.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device,
                 evaluate: Callable[[nn.Module], dict], export: Callable[[dict, dict], None],
                 tokenizer: Tokenizer, teacher: nn.Module | None = None, alpha: float = 0.9,
                 temperature: float = 1.0):  # fmt: skip
        super().__init__(model, cfg, device, evaluate, export)
        self.tokenizer = tokenizer
        self.teacher, self.alpha, self.temperature = teacher, alpha, temperature

    def losses(self, phase, batch, step):
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        logits = self.train_model(x)
        terms = {"ce": next_token_cross_entropy(logits, y, PAD)}
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            terms["distill"] = distillation(logits, teacher_logits, y, self.temperature, PAD)
        return terms

    def loss_weights(self, step):
        return {} if self.teacher is None else {"ce": 1 - self.alpha, "distill": self.alpha}

    def preview(self) -> Preview:
        """A few bars sampled without the grammar mask from a fixed seed (the training RNG
        is not touched), drawn as a piano roll, with whether the grammar accepts them."""
        generator = torch.Generator(device=self.device).manual_seed(0)
        prompt = torch.full((1, 1), BOS, dtype=torch.long, device=self.device)
        ids = sample(self.model, self.tokenizer.vocab, prompt, PREVIEW_BARS, PREVIEW_TOKENS,
                     SamplingConfig(grammar=False), generator)[0].cpu().numpy()  # fmt: skip
        self.model.train()
        ids = ids[ids != PAD]
        valid = self.tokenizer.grammar.validate(ids) is None
        image = piano_roll(self.tokenizer.decode(ids))
        return Preview(image, {"grammatical": float(valid), "tokens": float(len(ids))})


def training_windows(config: RunConfig, vocab, shards: list[Shard],
                     processes: int = 1) -> torch.utils.data.Dataset:  # fmt: skip
    """The training windows of ``config`` over the train shards of its corpora, in the order
    of ``config.data.weighted_sources()``; several corpora are drawn by their weights.
    ``processes`` data-parallel ranks share each step's windows."""
    data, seed = config.data, config.train.seed
    windows_per_step = config.train.batch_size * config.train.grad_accum * processes
    windows = [
        WindowDataset(shard, vocab, data.seq_len, seed, data.transpose, augment=data.augment,
                      batch_size=windows_per_step, curriculum=data.curriculum,
                      style=style_index(source.source, vocab),  # a folder: "other"
                      control_dropout=data.control_dropout, infill=data.infill)
        for shard, source in zip(shards, data.weighted_sources(), strict=True)
    ]  # fmt: skip
    if len(windows) == 1:
        return windows[0]
    return WeightedWindows(windows, [s.weight for s in data.weighted_sources()], seed)


def _datasets(config: RunConfig, tokenizer: Tokenizer, ranks: dd.Ranks, progress: bool,
              dataset: Dataset | None) -> tuple[Dataset, list[Dataset]]:  # fmt: skip
    """The run's corpora, prepared (rank 0 first; the others then find them cached)."""
    data = config.data

    def prepared(name: str) -> Dataset:
        return prepare(resolve_source(name, data.workers, progress), tokenizer,
                       workers=data.workers, progress=progress, strict=data.strict,
                       preprocessing=data.preprocess)  # fmt: skip

    result = None
    for turn in (True, False):  # rank 0's turn, then everyone else's
        if ranks.is_main == turn:
            main = dataset if dataset is not None else prepared(data.source)
            result = main, [prepared(s.source) for s in data.weighted_sources()[1:]]
        dd.barrier(ranks)
    return result


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume and not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"{run_dir}: no checkpoint to resume from")
    if not resume and (run_dir / CHECKPOINT).exists():
        raise ConfigError(
            f"{run_dir}: a run is already there; pass --resume or choose another --name"
        )


def _build(config: RunConfig, tokenizer: Tokenizer, device: torch.device,
           init_from: ModelFolder | None) -> nn.Module:  # fmt: skip
    """The model of ``config`` (seeded), with ``init_from``'s weights when fine-tuning."""
    torch.manual_seed(config.train.seed)
    vocab = tokenizer.vocab
    update = {"vocab_size": tokenizer.vocab_size, "bar_id": int(vocab.offsets[TokenType.BAR]),
              "position_ids": (int(vocab.offsets[TokenType.POSITION]),
                               int(vocab.counts[TokenType.POSITION]))}  # fmt: skip
    model_cfg = config.model.model_copy(update=update)
    model = build_model(model_cfg)
    if (
        init_from is not None
        and isinstance(model, VAE)
        and isinstance(init_from.model, Transformer)
    ):
        model.start_from(init_from.model)  # a VAE whose decoder starts as a trained LM
    elif init_from is not None:
        model.load_state_dict(init_from.model.state_dict())
    return model.to(device)


def train_run(config: RunConfig, run_dir: Path, resume: bool = False, progress: bool = True,
              dataset: Dataset | None = None, init_from: ModelFolder | None = None,
              teacher: ModelFolder | None = None, distill_alpha: float = 0.9,
              distill_temperature: float = 1.0,
              on_eval: Callable[[int, dict], None] | None = None,
              log: Callable[[str], None] = print) -> dict:  # fmt: skip
    """Train a model as ``config`` says into ``run_dir``; return the exported model's meta.

    Run under ``torchrun`` it is one rank of a data-parallel job: rank 0 alone logs,
    evaluates, checkpoints and exports, and the others return an empty dict.

    Args:
        resume: continue from the run's checkpoint (``config`` as saved, with any safe
            overrides applied by the caller).
        dataset: the prepared main corpus, when the caller has it already.
        init_from: start from this model's weights (fine-tuning; ``config`` must hold its
            model and tokenizer sections).
        teacher: distil from this model (same tokenizer) as well as learning from the data.
        on_eval: called after each validation (rank 0), see :func:`train_loop`.
    """
    run_dir, cfg = Path(run_dir), config.train
    _check_run_dir(run_dir, resume)
    prefix = 1 + config.model.bars if config.model.arch == "vae" else 0  # latents come first
    if config.data.seq_len + prefix > config.model.max_seq_len:
        raise ConfigError(f"data.seq_len ({config.data.seq_len}) plus {prefix} latent positions "
                          f"exceeds model.max_seq_len ({config.model.max_seq_len})")  # fmt: skip
    if config.train.gan.enabled and config.model.arch != "vae":
        raise ConfigError(f"train.gan.enabled needs model.arch vae (got {config.model.arch})")
    if config.model.arch == "vae" and (len(config.data.sources) > 1 or teacher is not None):
        raise ConfigError("model.arch vae trains on one corpus (data.source), without a teacher")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        device = pick_device(cfg.device)
    except ValueError as e:
        raise ConfigError(f"train.device: {e}") from None
    try:
        check_precision(cfg.precision, device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ranks = dd.from_environment()
    device = dd.start(ranks, device)
    try:
        return _train(config, run_dir, resume, progress, dataset, init_from, teacher,
                      (distill_alpha, distill_temperature), on_eval, log, ranks, device)  # fmt: skip
    finally:
        dd.stop(ranks)


def _lm_measures(config, tokenizer, val_shard: Shard, device: torch.device):
    """A language model's validation (NLL per token) and test (the one `aurl evaluate`
    reports) functions."""
    seq_len, limit = config.data.seq_len, config.train.eval_windows

    def evaluate(m: nn.Module) -> dict:
        loss, _ = nll_per_token(m, val_shard, seq_len, device, limit=limit)
        return {"val_loss": round(loss, 5), "val_ppl": round(math.exp(loss), 4)}

    def test(folder: ModelFolder, shard: Shard) -> dict:
        loss, n = test_nll(folder, shard, device)
        return {"test_nll_per_token": round(loss, 5), "test_ppl": round(math.exp(loss), 4),
                "test_tokens": n}  # fmt: skip

    return evaluate, test


def _vae_measures(config, tokenizer, val_shard: Shard, device: torch.device):
    """A VAE's validation and test functions over held-out K-bar segments: the objective
    trained (reconstruction + beta x KL per token, at the full beta), the negative ELBO per
    token (``val_elbo``, an upper bound of the NLL) and the latent diagnostics.

    Validation selects by the objective, not the ELBO: with beta below 1 the KL grows as the
    latents come to carry more, and the ELBO kept a vaguer early model (the shipped VAE's
    run: step 400 of 1,000, token accuracy 0.785 against the last step's 0.842)."""
    count = config.train.eval_windows or VAE_EVAL_SEGMENTS
    seq_len, bars = config.data.seq_len, config.model.bars
    val = fixed_segments(val_shard, tokenizer.vocab, seq_len, bars, count)
    beta = config.train.vae.beta

    def evaluate(m: nn.Module) -> dict:
        metrics = segment_metrics(m, val, device)
        kl = metrics["val_loss"] - metrics["val_rec"]
        return metrics | {"val_elbo": metrics["val_loss"],
                          "val_loss": round(metrics["val_rec"] + beta * kl, 5)}  # fmt: skip

    def test(folder: ModelFolder, shard: Shard) -> dict:
        segments = fixed_segments(shard, tokenizer.vocab, seq_len, bars, count)
        metrics = segment_metrics(folder.model, segments, device)
        return {"test_nll_per_token": metrics["val_loss"], "test_rec_per_token": metrics["val_rec"],
                "test_token_accuracy": metrics["val_token_accuracy"],
                "test_segments": len(segments)}  # fmt: skip

    return evaluate, test


def _vae_gan_task(vae: nn.Module, config, device: torch.device, evaluate, export) -> Task:
    """The VAE-GAN recipe: ``vae`` against a fresh discriminator shaped by ``train.gan``."""
    gan, m = config.train.gan, config.model
    disc = Discriminator(DiscriminatorConfig(
        vocab_size=vae.config.vocab_size, n_layer=gan.disc_layers, n_head=gan.disc_heads,
        n_embd=gan.disc_embd, max_seq_len=m.max_seq_len, bars=m.bars,
    )).to(device)  # fmt: skip
    return VAEGANTask(vae, disc, config.train, device, evaluate, export, gan.adversarial,
                      gan.matching, gan.warmup, gan.disc_lr)  # fmt: skip


def _train(config, run_dir, resume, progress, dataset, init_from, teacher, distill, on_eval,
           log, ranks: dd.Ranks, device: torch.device) -> dict:  # fmt: skip
    cfg, data = config.train, config.data
    tokenizer = Tokenizer(config.tokenizer)
    dataset, extra = _datasets(config, tokenizer, ranks, progress, dataset)
    train_shards = [Shard(d.split("train")) for d in (dataset, *extra)]
    val_shard = Shard(dataset.split("val"))
    if val_shard.num_tokens == 0:
        val_shard = train_shards[0]
        if ranks.is_main:
            log(f"{data.source}: too small for a validation split; validating on training data")
    if ranks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / RUN_CONFIG,
                          yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))  # fmt: skip
    model = _build(config, tokenizer, device, init_from)
    is_vae = config.model.arch == "vae"
    windows = training_windows(config, tokenizer.vocab, train_shards, ranks.world)
    if is_vae:
        windows = SegmentWindows(windows, config.model.bars)
    feed = BatchFeed(windows, cfg.batch_size, cfg.grad_accum, ranks.rank, ranks.world,
                     data.loader_workers)  # fmt: skip
    evaluate, test = (_vae_measures if is_vae else _lm_measures)(config, tokenizer, val_shard,
                                                                 device)  # fmt: skip

    facts = {"seq_len": data.seq_len, "device": str(device), "processes": ranks.world,
             "precision": cfg.precision, "command": " ".join(sys.argv)}  # fmt: skip
    origin = {k: str(f.path) for k, f in (("finetuned_from", init_from),
                                          ("distilled_from", teacher)) if f is not None}  # fmt: skip

    def export(metrics: dict, progress_: dict) -> None:
        meta = {
            "name": config.name, "parameters": sum(p.numel() for p in model.parameters()),
            "data_fingerprint": dataset.fingerprint, "data_source": data.source,
            "metrics": {"val_nll_per_token": metrics.get("val_elbo", metrics["val_loss"])}
            | {k: v for k, v in metrics.items() if k not in ("val_loss", "val_elbo")},
            "training": progress_ | facts, **origin,
        }  # fmt: skip
        save_model(model, tokenizer, run_dir / MODEL_DIR, meta)

    if is_vae and cfg.gan.enabled:
        task = _vae_gan_task(model, config, device, evaluate, export)
    elif is_vae:
        task = VAETask(model, cfg, device, evaluate, export)
    else:
        task = LMTask(model, cfg, device, evaluate, export, tokenizer,
                      None if teacher is None else teacher.model.to(device).eval(), *distill)  # fmt: skip
    started = time.perf_counter()
    state = train_loop(task, cfg, run_dir, feed, device, ranks, resume=resume, progress=progress,
                       extra_state={"config": config.model_dump(mode="json")},
                       on_eval=on_eval)  # fmt: skip
    if not ranks.is_main:
        return {}
    best = load_model(run_dir / MODEL_DIR, device)
    meta = best.meta
    test_shard = Shard(dataset.split("test"))
    if test_shard.num_tokens:
        meta["metrics"] |= test(best, test_shard)
    if is_vae:
        meta["attributes"] = latent_attributes(best.model, train_shards[0], tokenizer.vocab,
                                               data.seq_len, config.model.bars, device)  # fmt: skip
    meta["training"]["total_steps"] = state.step
    meta["training"]["process_wall_time_s"] = round(time.perf_counter() - started, 1)
    if state.stop_reason:
        meta["training"]["stopped_early"] = state.stop_reason
    save_model(best.model, tokenizer, run_dir / MODEL_DIR, meta)
    return meta
