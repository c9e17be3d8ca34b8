"""What a latent model's prior samples are worth: segments decoded from latents drawn from the
prior, compared with held-out segments of the data by the features of today's evaluation (mean
overlapped area and KL of the intra- and inter-set distance distributions), their likelihood
under a transformer used as a judge, their copying of the training set and their diversity.

Used by ``aurl evaluate`` on a VAE (the report's ``prior`` section) and by the VAE-GAN
comparison in ``benchmarks/bench_vae.py`` (the same measures over temperatures).
"""

from __future__ import annotations

import numpy as np
import torch

from aurl.evaluate.compare import compare_sets
from aurl.evaluate.features import set_features
from aurl.evaluate.memorization import diversity, memorization
from aurl.evaluate.notes import ids_to_notes
from aurl.generate.latents import prior
from aurl.generate.sampler import SamplingConfig, sample_latents
from aurl.models import ModelFolder
from aurl.tokens import PAD


@torch.no_grad()
def prior_samples(folder: ModelFolder, count: int, max_tokens: int, temperature: float = 1.0,
                  seed: int = 0, device="cpu", batch: int = 16) -> list[np.ndarray]:  # fmt: skip
    """``count`` K-bar segments decoded (sampled at ``temperature``, grammar-masked) from
    latents drawn from the prior with ``seed``; one id array each."""
    vae, cfg = folder.model, folder.model.config
    generator = torch.Generator(device=device).manual_seed(seed)
    out: list[np.ndarray] = []
    for start in range(0, count, batch):
        z = prior(min(batch, count - start), cfg.z_global, cfg.bars, cfg.z_bar, generator, device)
        ids = sample_latents(vae, folder.tokenizer.vocab, z, max_tokens,
                             SamplingConfig(temperature=temperature), generator)  # fmt: skip
        out += [row[row != PAD] for row in ids.cpu().numpy()]
    return out


@torch.no_grad()
def judge_nll(judge: ModelFolder, sequences: list[np.ndarray], device="cpu") -> np.ndarray:
    """Negative log-likelihood per token of each sequence under the transformer ``judge``
    (sequences longer than its context are cut to it)."""
    model, ctx = judge.model.eval(), judge.model.config.max_seq_len
    out = np.full(len(sequences), np.nan)
    for i, ids in enumerate(sequences):
        ids = torch.as_tensor(ids[: ctx + 1], dtype=torch.long, device=device)[None]
        if ids.shape[1] < 2:
            continue
        logits = model(ids[:, :-1])
        out[i] = float(torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]))
    return out


def sample_quality(samples: list[np.ndarray], reference: list[np.ndarray],
                   training: list[np.ndarray], folder: ModelFolder,
                   judge: ModelFolder | None, device="cpu") -> dict:  # fmt: skip
    """Samples against the reference segments: mean OA and KL over the features, the judge's
    NLL per token (and the reference's), the share of K-bar windows found in ``training``,
    and the diversity of the samples (mean Jaccard distance of their bar contents)."""
    vocab, bars = folder.tokenizer.vocab, folder.model.config.bars
    gen = [ids_to_notes(s, vocab) for s in samples]
    ref = [ids_to_notes(s, vocab) for s in reference]
    comparison = compare_sets(set_features(gen), set_features(ref))
    oas = [c["oa"] for c in comparison.values() if c["oa"] is not None]
    kls = [c["kl"] for c in comparison.values() if c["kl"] is not None]
    copied = memorization(gen, [ids_to_notes(t, vocab) for t in training], bars)["summary"]
    out = {
        "samples": len(samples),
        "mean_oa": round(float(np.mean(oas)), 4) if oas else None,
        "mean_kl": round(float(np.mean(kls)), 4) if kls else None,
        "copied_window_share": _rounded(copied["window_share_mean"]),
        "diversity": _rounded(diversity(gen, bars)["bar_jaccard_distance_mean"]),
        "judge_nll": None,
        "reference_judge_nll": None,
    }
    if judge is not None:
        out["judge_nll"] = round(float(np.nanmean(judge_nll(judge, samples, device))), 4)
        out["reference_judge_nll"] = round(
            float(np.nanmean(judge_nll(judge, reference, device))), 4
        )
    return out


def _rounded(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def same_vocabulary(a: ModelFolder, b: ModelFolder) -> bool:
    """Whether two model folders read the same token ids (a judge must)."""
    return a.tokenizer.to_dict() == b.tokenizer.to_dict()
