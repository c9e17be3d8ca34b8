"""``aurl evaluate`` for latent models: reconstruction, interpolation and attribute vectors
measured on held-out segments, against the targets the design sets.

- reconstruction: token accuracy with teacher forcing from the posterior mean (target 0.95)
  and note F1 of the greedy decode (onset, pitch and duration matched; target 0.8);
- active latent dimensions (target: at least half);
- interpolation between segments far apart in note density: Spearman rho of the density
  along the steps (target 0.9) and the share of steps the grammar accepts;
- attribute vectors: rho between the amount asked and the attribute realised (target 0.9)
  and how much the other attributes move with the amount, relative to it, each in its
  standard deviations and within each segment (target: under a quarter);
- with the chorales-only shipped transformer (bach-small) as a judge (when it reads the same tokens): each
  interpolation step's NLL per token against its endpoints' (target: at most 1.25 times);
- prior samples against the test segments (:mod:`aurl.evaluate.latent_samples`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from aurl.data.shards import Shard
from aurl.data.windows import fixed_segments
from aurl.evaluate.datasets import source_dataset, trained_dataset
from aurl.evaluate.latent import segment_metrics
from aurl.evaluate.latent_samples import judge_nll, prior_samples, same_vocabulary, sample_quality
from aurl.fileio import atomic_write_json, atomic_write_text
from aurl.generate.attributes import ATTRIBUTES, move, segment_attributes
from aurl.generate.latents import interpolate, join
from aurl.generate.sampler import SamplingConfig, sample_latents
from aurl.models import ModelFolder, load_model
from aurl.paths import CHORALE_MODEL
from aurl.tokens import PAD, Tokenizer

TARGETS = {"token_accuracy": 0.95, "note_f1": 0.8, "active_share": 0.5,
           "interpolation_rho": 0.9, "interpolation_nll_ratio": 1.25, "attribute_rho": 0.9,
           "attribute_leak": 0.25}  # fmt: skip


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties ranked by order; NaN when either side is constant)."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def note_f1(reference: np.ndarray, decoded: np.ndarray, tokenizer: Tokenizer) -> float:
    """F1 of the notes of two id sequences, matched on (onset, pitch, duration) as multisets."""

    def notes(ids: np.ndarray) -> Counter:
        score = tokenizer.decode(ids[ids != PAD])
        return Counter((n.time, n.pitch, n.duration) for t in score.tracks for n in t.notes)

    a, b = notes(reference), notes(decoded)
    hits = sum((a & b).values())
    if not a and not b:
        return 1.0
    return 2 * hits / (sum(a.values()) + sum(b.values()))


def _segment_len(folder: ModelFolder) -> int:
    """The longest segment the model was trained on (its training windows' length)."""
    vae = folder.model
    return folder.meta.get("training", {}).get("seq_len") or (
        vae.decoder.config.max_seq_len - vae.prefix_len
    )


@torch.no_grad()
def decode(folder: ModelFolder, z: tuple[torch.Tensor, torch.Tensor]) -> list[np.ndarray]:
    """Greedy, grammar-masked K-bar decodes of latents ``z``, one id array per row, each cut
    at the longest segment the model was trained on."""
    out = sample_latents(folder.model, folder.tokenizer.vocab, z, _segment_len(folder),
                         SamplingConfig(greedy=True))  # fmt: skip
    return [row[row != PAD] for row in out.cpu().numpy()]


def _means(folder: ModelFolder, segments, device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([s[0] for s in segments]).to(device)
    with torch.no_grad():
        return folder.model.encode(x).mean()


def reconstruction(folder: ModelFolder, segments, z) -> dict:
    """Note F1 of each segment's greedy decode from its posterior mean ``z``."""
    decoded = decode(folder, z)
    f1 = [
        note_f1(s[0].numpy(), d, folder.tokenizer) for s, d in zip(segments, decoded, strict=True)
    ]
    return {"note_f1": round(float(np.mean(f1)), 4), "segments": len(segments)}


def interpolation(folder: ModelFolder, segments, z, device, judge: ModelFolder | None = None,
                  pairs: int = 4, steps: int = 8) -> dict:  # fmt: skip
    """Interpolations between the densest and the sparsest segments: the density's rank
    correlation with the step, the share of steps the grammar accepts, and (with a judge) the
    worst ratio of an inner step's NLL per token to the mean of its endpoints'."""
    vocab, grammar = folder.tokenizer.vocab, folder.tokenizer.grammar
    density = np.array([segment_attributes(s[0].numpy(), vocab)["density"] for s in segments])
    order = np.argsort(density)
    rhos, valid, ratios = [], [], []
    for lo, hi in zip(order[:pairs], order[::-1][:pairs], strict=True):
        path = interpolate((z[0][lo : lo + 1], z[1][lo : lo + 1]),
                           (z[0][hi : hi + 1], z[1][hi : hi + 1]), steps)  # fmt: skip
        ids = decode(folder, path)
        realised = [segment_attributes(i, vocab)["density"] for i in ids]
        rhos.append(spearman(np.arange(steps), np.array(realised)))
        valid += [grammar.validate(i) is None for i in ids]
        if judge is not None:
            nll = judge_nll(judge, ids, device)
            ratios.append(float(np.nanmax(nll[1:-1]) / np.mean(nll[[0, -1]])))
    known = [r for r in rhos if not np.isnan(r)]  # NaN: the decodes did not vary at all
    return {"density_rho": round(float(np.mean(known)), 4) if known else None,
            "rho_per_pair": [None if np.isnan(r) else round(r, 4) for r in rhos],
            "grammatical": round(float(np.mean(valid)), 4),
            "judge_nll_ratio_max": round(max(ratios), 4) if ratios else None}  # fmt: skip


def attributes(folder: ModelFolder, segments, z, count: int = 8,
               amounts: tuple[float, ...] = (-2, -1, 0, 1, 2)) -> dict:  # fmt: skip
    """Per attribute vector: the rank correlation of amount and realised attribute, and how
    far the other attributes move with the amount relative to it (:func:`movement`)."""
    vectors, vocab = folder.meta.get("attributes", {}), folder.tokenizer.vocab
    z = z[0][:count], z[1][:count]
    base = [segment_attributes(s[0].numpy(), vocab) for s in segments]
    scale = {a: float(np.std([b[a] for b in base])) or 1.0 for a in ATTRIBUTES}
    out = {}
    for name, vector in vectors.items():
        moved = [move(z, vector, a) for a in amounts]
        ids = decode(folder, join(moved))
        values = [segment_attributes(i, vocab) for i in ids]
        asked = np.repeat(amounts, len(z[0]))
        rho = spearman(asked, np.array([v[name] for v in values]))
        table = {a: np.array([v[a] for v in values]).reshape(len(amounts), -1) / scale[a]
                 for a in ATTRIBUTES}  # fmt: skip
        slope = movement(table, np.asarray(amounts, float))
        leak = max((abs(slope[a]) for a in ATTRIBUTES if a != name), default=0.0) / max(
            abs(slope[name]), 1e-9
        )
        out[name] = {"rho": round(rho, 4), "leak": round(float(leak), 4),
                     "slopes": {a: round(float(v), 4) for a, v in slope.items()}}  # fmt: skip
    return out


def movement(table: dict[str, np.ndarray], amounts: np.ndarray) -> dict[str, float]:
    """Per attribute, how much it moves per unit of amount: the least-squares slope of its
    values (amounts, segments) on the amounts within each segment (each segment's own level
    taken out, so the segments' differences are not counted as movement)."""
    x = amounts - amounts.mean()
    out = {}
    for name, values in table.items():
        centred = values - values.mean(0, keepdims=True)
        out[name] = float((x[:, None] * centred).sum() / (values.shape[1] * (x**2).sum()))
    return out


def evaluate_latent(model: str | Path | None, folder: ModelFolder, device, data: str | None = None,
                    count: int = 64, seed: int = 0, progress: bool = False) -> dict:  # fmt: skip
    """Every measure above on ``count`` test segments of the model's data (or ``data``), and
    ``count`` prior samples drawn with ``seed``."""
    t0 = time.perf_counter()
    dataset = (
        source_dataset(data, folder.tokenizer, progress)
        if data
        else trained_dataset(folder, progress)
    )
    test = Shard(dataset.split("test"))
    if test.num_tokens == 0:
        raise ValueError(f"{data or folder.meta.get('data_source')}: the test split is empty")
    seq_len = folder.meta.get("training", {}).get("seq_len") or (
        folder.model.decoder.config.max_seq_len - folder.model.prefix_len
    )
    segments = fixed_segments(
        test, folder.tokenizer.vocab, seq_len, folder.model.config.bars, count
    )
    diagnostics = segment_metrics(folder.model, segments, device)
    z = _means(folder, segments, device)  # every measure below starts from these
    judge = load_model(CHORALE_MODEL, device)
    judge = judge if same_vocabulary(judge, folder) else None
    train = fixed_segments(Shard(dataset.split("train")), folder.tokenizer.vocab, seq_len,
                           folder.model.config.bars, 4 * count)  # fmt: skip
    reference = [s[0].numpy() for s in segments]
    samples = prior_samples(folder, count, _segment_len(folder), seed=seed, device=device)
    report = {
        "model": {"path": str(model), "parameters": folder.model.num_params(),
                  "evaluated_on": data or folder.meta.get("data_source")},
        "diagnostics": {k.removeprefix("val_"): v for k, v in diagnostics.items()},
        "reconstruction": reconstruction(folder, segments, z),
        "interpolation": interpolation(folder, segments, z, device, judge),
        "attributes": attributes(folder, segments, z),
        "prior": sample_quality(samples, [r[r != PAD] for r in reference],
                                [t[0].numpy() for t in train], folder, judge, device),
        "targets": TARGETS,
    }  # fmt: skip
    report["timing_s"] = round(time.perf_counter() - t0, 1)
    return report


def write_latent_report(report: dict, out: str | Path) -> Path:
    """``report.json`` and a short ``report.md`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    d, r, i = report["diagnostics"], report["reconstruction"], report["interpolation"]
    p = report["prior"]
    active = (d["active_global"] + d["active_bar"]) / 2
    rows = [("token accuracy (teacher forcing)", d["token_accuracy"], TARGETS["token_accuracy"]),
            ("note F1 of the greedy decode", r["note_f1"], TARGETS["note_f1"]),
            ("active latent dimensions (share)", round(active, 3), TARGETS["active_share"]),
            ("interpolation: density rho", i["density_rho"], TARGETS["interpolation_rho"]),
            ("interpolation: grammatical share", i["grammatical"], 1.0),
            ("interpolation: worst step NLL / endpoints' (judge)", i["judge_nll_ratio_max"],
             TARGETS["interpolation_nll_ratio"])]  # fmt: skip
    rows += [(f"attribute {k}: rho / leak", f"{v['rho']} / {v['leak']}",
              f"{TARGETS['attribute_rho']} / {TARGETS['attribute_leak']}")
             for k, v in report["attributes"].items()]  # fmt: skip
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    atomic_write_text(
        out / "report.md",
        f"""# Latent model report

{report["model"]["path"]} ({report["model"]["parameters"]:,} parameters) on the test
segments of {report["model"]["evaluated_on"]}; negative ELBO {d["loss"]} nats per token,
reconstruction {d["rec"]}, KL {d["kl_global"]} (segment) and {d["kl_bar"]} (bars).

| measure | value | target |
|---|---|---|
{table}

Prior samples ({p["samples"]}, temperature 1) against the test segments: mean overlapped area
{p["mean_oa"]}, mean KL {p["mean_kl"]} over the features; NLL per token under the shipped
transformer {p["judge_nll"]} (test segments: {p["reference_judge_nll"]}); share of
K-bar windows found in the training segments {p["copied_window_share"]}; diversity (bar-content
Jaccard distance) {p["diversity"]}.
""",
    )
    return out
