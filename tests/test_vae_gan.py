"""The VAE-GAN: the discriminator's phase changes only the discriminator, the generator's
only the VAE; the loop runs both phases and logs every term; the judgement has its scales."""

from __future__ import annotations

import json

import torch

from aurl.models.discriminator import Discriminator, DiscriminatorConfig
from aurl.tokens import BOS, PAD, Tokenizer, TokenType
from aurl.train.config import TrainConfig
from aurl.train.loop import train_loop
from aurl.train.vae_gan import VAEGANTask
from factories import debug_model

TK = Tokenizer()
BAR = int(TK.vocab.offsets[TokenType.BAR])


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(BAR + 1, TK.vocab_size, (3, 41), generator=g)
    ids[:, 0], ids[:, 1], ids[:, 12], ids[:, 25] = BOS, BAR, BAR, BAR
    ids[2, 33:] = PAD
    return ids[:, :-1], ids[:, 1:]


def task(cfg: TrainConfig | None = None) -> VAEGANTask:
    vae = debug_model("vae", bars=4, z_global=8, z_bar=4, bar_id=BAR)
    vae.train()
    disc = Discriminator(DiscriminatorConfig(vocab_size=TK.vocab_size, n_layer=1, n_head=2,
                                             n_embd=32, max_seq_len=256, bars=4))  # fmt: skip
    cfg = cfg or TrainConfig(lr=1e-2, warmup_steps=0)
    return VAEGANTask(vae, disc, cfg, torch.device("cpu"), lambda m: {"val_loss": 1.0},
                      lambda metrics, progress: None, warmup=0)  # fmt: skip


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters (not buffers: spectral norm's power iteration moves its vectors
    at every forward pass, whichever phase it is)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict, module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def step(t: VAEGANTask, phase: str) -> dict:
    opt = t.optimizers()[phase]
    opt.zero_grad(set_to_none=True)
    terms = t.losses(phase, batch(), step=5)
    w = t.loss_weights(5)
    sum(w.get(k, 1.0) * v for k, v in terms.items()).backward()
    opt.step()
    return terms


def test_each_phase_changes_only_its_own_model():
    t = task()
    t.distribute(lambda m: m)
    vae, disc = weights(t.vae.model), weights(t.discriminator)
    terms = step(t, "discriminator")
    assert set(terms) == {"disc_hinge"}
    assert changed(disc, t.discriminator) and not changed(vae, t.vae.model)
    disc = weights(t.discriminator)
    terms = step(t, "model")
    assert {"rec", "kl_global", "kl_bar", "adversarial", "matching"} <= set(terms)
    assert changed(vae, t.vae.model) and not changed(disc, t.discriminator)


def test_the_judgement_has_every_scale():
    t = task()
    x, y = batch()
    judged = t._judge(torch.nn.functional.one_hot(y, TK.vocab_size).float(), y)
    assert judged.scores["bar"].shape == (3, 4) and judged.scores["phrase"].shape == (3, 2)
    assert judged.scores["segment"].shape == (3, 1) and len(judged.features) == 1


def test_the_loop_alternates_the_phases_and_logs_every_term(tmp_path):
    cfg = TrainConfig(max_steps=3, lr=1e-3, min_lr=1e-3, warmup_steps=0, eval_every=3,
                      checkpoint_every=3, log_every=1, tensorboard=False)  # fmt: skip
    t = task(cfg)
    vae, disc = weights(t.vae.model), weights(t.discriminator)
    train_loop(t, cfg, tmp_path, lambda s, m: batch(s), torch.device("cpu"), progress=False)
    assert changed(vae, t.vae.model) and changed(disc, t.discriminator)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("disc_hinge", "rec", "adversarial", "matching", "loss_discriminator",
                "loss_model", "grad_norm_discriminator", "grad_norm_model"):  # fmt: skip
        assert key in first, key
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert set(saved["optimizers"]) == {"discriminator", "model"}


def test_train_a_vae_gan_and_continue_a_vae_adversarially(small_corpus, tmp_path):
    from pathlib import Path

    from aurl.cli import main
    from aurl.models import load_model
    from aurl.models.vae import VAE

    root = Path(__file__).parents[1] / "configs"
    quick = [f"data.source={small_corpus}", "train.max_steps=4", "train.eval_every=2",
             "train.log_every=1", "train.tensorboard=false", "--runs-dir", str(tmp_path),
             "--quiet"]  # fmt: skip
    assert main(["train", "--config", str(root / "vae-gan-tiny.yaml"), *quick]) == 0
    lines = [json.loads(x) for x in (tmp_path / "vae-gan-tiny" / "metrics.jsonl").read_text()
             .splitlines()]  # fmt: skip
    assert {"disc_hinge", "adversarial", "matching", "rec"} <= set(lines[0])
    assert isinstance(load_model(tmp_path / "vae-gan-tiny" / "model").model, VAE)
    # a VAE trained on, adversarially, from its weights
    assert main(["train", "--config", str(root / "vae-tiny.yaml"), "--name", "plain", *quick]) == 0
    assert main(["train", "--config", str(root / "vae-gan-tiny.yaml"), "--name", "gan",
                 "--init", str(tmp_path / "plain"), *quick]) == 0  # fmt: skip
    meta = load_model(tmp_path / "gan" / "model").meta
    assert meta["finetuned_from"].endswith("model")
    assert main(["train", "--config", str(root / "tiny.yaml"), "train.gan.enabled=true",
                 *quick]) == 2  # fmt: skip
