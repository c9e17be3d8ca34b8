"""The VAE-GAN recipe: the VAE's terms plus a multi-scale discriminator's judgement of the
decoder's soft outputs, in alternating phases with two optimizers.

Each step first updates the discriminator (hinge loss on real segments against the VAE's
reconstructions, taken without gradients), then the VAE with its reconstruction and KL terms
plus the adversarial and feature-matching terms, whose weights rise from 0 over a warm-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aurl.losses import feature_matching, hinge_discriminator, hinge_generator
from aurl.models.discriminator import Discriminator, Judgement
from aurl.models.vae import VAE, bar_index
from aurl.tokens import PAD
from aurl.train.config import TrainConfig
from aurl.train.task import Task
from aurl.train.vae import VAETask


class VAEGANTask(Task):
    """Trains a VAE against a discriminator.

    Args:
        vae, discriminator: the two models (``model`` holds both for checkpoints).
        cfg: the train section.
        device: where batches go.
        evaluate, export: as for :class:`~aurl.train.vae.VAETask` (the VAE alone).
        adversarial, matching: weights of the adversarial and feature-matching terms.
        warmup: steps over which those weights rise from 0.
        disc_lr: the discriminator's learning rate relative to the schedule's.
    """

    def __init__(self, vae: VAE, discriminator: Discriminator, cfg: TrainConfig,
                 device: torch.device, evaluate, export, adversarial: float = 0.1,
                 matching: float = 1.0, warmup: int = 200, disc_lr: float = 1.0):  # fmt: skip
        self.vae = VAETask(vae, cfg, device, evaluate, export)
        self.discriminator, self.train_disc, self.device = discriminator, discriminator, device
        self.model = nn.ModuleDict({"vae": vae, "discriminator": discriminator})
        self.weights, self.warmup = (adversarial, matching), warmup
        self._disc_opt = torch.optim.AdamW(
            [{"params": list(discriminator.parameters()), "lr_mult": disc_lr}],
            lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0,
        )  # fmt: skip

    def optimizers(self):
        return {"discriminator": self._disc_opt, **self.vae.optimizers()}

    def phases(self):
        return ["discriminator", "model"]

    def distribute(self, wrap):
        self.train_disc = wrap(self.discriminator)
        return self.vae.distribute(wrap) + [self.train_disc]

    def _judge(self, probs: torch.Tensor, y: torch.Tensor) -> Judgement:
        cfg = self.vae.model.config
        return self.train_disc(probs, y != PAD, bar_index(y, cfg.bar_id, cfg.bars))

    def losses(self, phase, batch, step):
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        real = F.one_hot(y, self.vae.model.config.vocab_size).float()
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.vae.train_model(x).logits.float().softmax(-1)
            judged_real, judged_fake = self._judge(real, y), self._judge(fake, y)
            return {"disc_hinge": hinge_discriminator(judged_real.scores, judged_fake.scores)}
        terms, logits = self.vae.terms(x, y)
        judged_fake = self._judge(logits.float().softmax(-1), y)
        with torch.no_grad():
            judged_real = self._judge(real, y)
        terms["adversarial"] = hinge_generator(judged_fake.scores)
        terms["matching"] = feature_matching(judged_real.features, judged_fake.features)
        return terms

    def loss_weights(self, step):
        ramp = min(1.0, step / self.warmup) if self.warmup else 1.0
        adversarial, matching = self.weights
        return self.vae.loss_weights(step) | {"adversarial": adversarial * ramp,
                                              "matching": matching * ramp}  # fmt: skip

    def batch_weight(self, batch) -> float:
        return self.vae.batch_weight(batch)

    def batch_tokens(self, batch) -> int:
        return self.vae.batch_tokens(batch)

    def evaluate(self):
        return self.vae.evaluate()

    def export(self, metrics, progress):
        self.vae.export(metrics, progress)
