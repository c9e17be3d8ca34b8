"""VAE measurements: how the latents should reach the decoder, and whether the adversarial
part of the VAE-GAN helps.

    .venv/bin/python benchmarks/bench_vae.py condition [--steps 300]
    .venv/bin/python benchmarks/bench_vae.py gan --init src/aurl/shipped/vae-small [--steps 200]

condition: three VAEs of the same shape (``configs/vae-small.yaml`` narrowed to 128 wide and
3 layers, so that the three fit in half an hour on 2 cores) train on the same chorale
segments with the same seed for ``--steps`` steps, one per ``model.condition``: the latents
as prefix embeddings only, also added to every token of their bar, or to every layer's input.
Reported from the held-out segments at the last evaluation: the reconstruction loss with the
true latents, how much worse it gets with another segment's latents (the decoder's use of the
latents: 0 means it ignores them), teacher-forced token accuracy, the KL terms and the share
of active latent units. Writes benchmarks/results/vae.md and vae.json.

gan: a trained VAE (``--init``) continues for ``--steps`` steps twice from the same weights
and data: with the discriminator (``train.gan.enabled``, the weights of
``configs/vae-gan-tiny.yaml``) and without it (the control). Each then samples 64 segments
from the prior at every temperature in 0.7-1.2 with 3 seeds, measured against the test
segments (:mod:`aurl.evaluate.latent_samples`: mean OA, NLL under the chorale transformer,
copying, diversity), and each run's held-out reconstruction at its last evaluation. Writes
benchmarks/results/vae_gan.md and vae_gan.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from aurl.config import load_config
from aurl.data.shards import Shard
from aurl.tokens import PAD
from aurl.train.lm import train_run
from common import machine_info, machine_markdown, write_results

ROOT = Path(__file__).parents[1]
CONDITIONS = ("prefix", "tokens", "layers")
# the shape and KL settings benchmarks/results/vae.md was measured with (bar latents of 32 in
# one part, beta 1, token dropout 0.3), whatever the shipped config holds now
SHAPE = ["model.n_embd=128", "model.n_layer=3", "model.n_head=4", "model.enc_layers=2",
         "model.z_bar=32", "model.slots=1", "train.vae.beta=1.0", "train.vae.token_dropout=0.3",
         "train.lr=1e-3", "train.tensorboard=false", "train.eval_windows=64",
         "train.warmup_steps=30", "train.precision=fp32"]  # fmt: skip
SHOWN = ("val_rec", "rec_shuffled_gap", "val_token_accuracy", "val_kl_global", "val_kl_bar",
         "active_global", "active_bar")  # fmt: skip


def conditioning(where: Path, steps: int) -> dict:
    """The last evaluation of one run per ``model.condition``."""
    out = {}
    for condition in CONDITIONS:
        overrides = [*SHAPE, f"model.condition={condition}", f"train.max_steps={steps}",
                     f"train.eval_every={steps // 3}", f"train.checkpoint_every={steps}",
                     f"train.vae.beta_warmup={steps // 3}"]  # fmt: skip
        config = load_config(ROOT / "configs" / "vae-small.yaml", overrides)
        meta = train_run(config, where / condition, progress=False, log=lambda _: None)
        evals = _evaluations(where / condition)
        out[condition] = {"parameters": meta["parameters"],
                          "curve": [(r["step"], r["val_rec"], r["rec_shuffled_gap"]) for r in evals],
                          **{k: evals[-1][k] for k in SHOWN}}  # fmt: skip
    return out


def _evaluations(run: Path) -> list[dict]:
    """The evaluation lines of a run's metrics, in order."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val_rec" in r]


TEMPERATURES = (0.7, 0.85, 1.0, 1.2)
SEEDS = (0, 1, 2)
MEASURES = ("mean_oa", "judge_nll", "copied_window_share", "diversity")


def gan(where: Path, steps: int, init: Path, config: Path, samples: int = 64) -> dict:
    """The VAE-GAN and its control, continued from ``init``, over temperatures and seeds."""
    from aurl.data.windows import fixed_segments
    from aurl.evaluate.datasets import trained_dataset
    from aurl.evaluate.latent_samples import prior_samples, same_vocabulary, sample_quality
    from aurl.models import load_model
    from aurl.paths import CHORALE_MODEL

    start = load_model(init)
    judge = load_model(CHORALE_MODEL)  # the chorale transformer, as `aurl evaluate` judges
    judge = judge if same_vocabulary(judge, start) else None
    gan_cfg = load_config(ROOT / "configs" / "vae-gan-tiny.yaml").train.gan
    base = load_config(config, [
        f"train.max_steps={steps}", f"train.eval_every={steps}", f"train.checkpoint_every={steps}",
        "train.tensorboard=false", "train.warmup_steps=10", "train.lr=2e-4", "train.min_lr=2e-4",
        "train.vae.beta_warmup=0"])  # fmt: skip
    dataset = trained_dataset(start, False)
    vocab, bars = start.tokenizer.vocab, start.model.config.bars
    seq_len = base.data.seq_len
    test = [s[0].numpy() for s in fixed_segments(Shard(dataset.split("test")), vocab, seq_len, bars,
                                                 samples)]  # fmt: skip
    train = [s[0].numpy() for s in fixed_segments(Shard(dataset.split("train")), vocab, seq_len,
                                                  bars, 4 * samples)]  # fmt: skip
    test, train = [t[t != PAD] for t in test], [t[t != PAD] for t in train]
    out, held_out = {}, {}
    for label, enabled in (("VAE-GAN", True), ("control (no adversarial terms)", False)):
        train_cfg = base.train.model_copy(update={
            "gan": gan_cfg.model_copy(update={"enabled": enabled,
                                              "disc_embd": 128, "disc_heads": 4})})  # fmt: skip
        config = base.model_copy(update={"model": start.model.config, "train": train_cfg,
                                         "tokenizer": start.tokenizer.config})  # fmt: skip
        run = where / ("gan" if enabled else "control")
        train_run(config, run, progress=False, dataset=dataset, init_from=start,
                  log=lambda _: None)  # fmt: skip
        folder = load_model(run / "model")
        last = _evaluations(run)[-1]
        held_out[label] = {k: last[k] for k in ("val_rec", "val_token_accuracy")}
        rows = {}
        for t in TEMPERATURES:
            per_seed = [sample_quality(prior_samples(folder, samples, seq_len, t, seed), test,
                                       train, folder, judge) for seed in SEEDS]  # fmt: skip
            rows[str(t)] = {m: _mean_std([q[m] for q in per_seed]) for m in MEASURES}
        out[label] = rows
    return {"steps": steps, "init": str(init), "samples": samples, "seeds": list(SEEDS),
            "temperatures": list(TEMPERATURES), "curves": out,
            "reconstruction": held_out}  # fmt: skip


def _mean_std(values: list) -> list:
    known = [v for v in values if v is not None]
    return [round(float(np.mean(known)), 4), round(float(np.std(known)), 4)] if known else []


def render_gan(r: dict, info: dict) -> str:
    head = "| model | temperature | " + " | ".join(MEASURES) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(MEASURES)]
    for label, rows in r["curves"].items():
        for t, row in rows.items():
            cells = " | ".join(f"{v[0]:.4f} ± {v[1]:.4f}" if v else "-" for v in row.values())
            lines.append(f"| {label} | {t} | {cells} |")
    table = "\n".join(lines)
    recon = "\n".join(
        f"| {label} | {v['val_rec']:.4f} | {v['val_token_accuracy']:.4f} |"
        for label, v in r.get("reconstruction", {}).items()
    )
    return f"""# VAE-GAN against its control

From `{r["init"]}`, {r["steps"]} more steps with the discriminator (VAE-GAN) and without it
(control), same data and seed. Each model samples {r["samples"]} segments from the prior per
temperature and seed ({len(r["seeds"])} seeds; mean ± standard deviation over seeds), compared
with {r["samples"]} test segments: mean overlapped area of the features (higher is closer to
the data), NLL per token under the chorale transformer (bach-small; lower is more likely; - where its
vocabulary differs from the VAE's), share of
K-bar windows found in training segments (copying), bar-content Jaccard distance between
samples (diversity).

{table}

Held-out reconstruction at the end of each run (what `interpolate` and `vary` decode; the
validation segments, from the posterior mean, teacher forcing):

| model | reconstruction (nats per token) | token accuracy |
|---|---:|---:|
{recon}

{machine_markdown(info)}
"""


def render(r: dict, info: dict) -> str:
    c = r["conditioning"]
    rows = "\n".join(
        f"| {k} | {v['parameters']:,} | {v['val_rec']:.4f} | {v['rec_shuffled_gap']:.4f} | "
        f"{v['val_token_accuracy']:.3f} | {v['val_kl_global']:.1f} | {v['val_kl_bar']:.1f} | "
        f"{v['active_global']:.0%} | {v['active_bar']:.0%} |"
        for k, v in c.items()
    )
    curves = "\n".join(
        f"| {k} | " + ", ".join(f"{s}: {a:.3f} ({g:+.3f})" for s, a, g in v["curve"]) + " |"
        for k, v in c.items()
    )
    return f"""# VAE: how the latents reach the decoder

`model.condition`, {r["steps"]} steps of 16 four-bar chorale segments, the same data and seed;
`configs/vae-small.yaml` at 128 wide and 3 decoder layers. *prefix*: 1 + K embeddings
before the tokens; *tokens*: also added to the embedding of every token of their bar;
*layers*: also added to every block's input. Held-out segments at the last evaluation:
reconstruction loss (nats per token) with the posterior's latents, the increase with another
segment's latents (the decoder's use of them), teacher-forced token accuracy, KL (nats per
segment) and the share of latent units with KL above 0.01 nats.

| condition | parameters | reconstruction | + with other latents | token accuracy | KL global | KL bars | active global | active bars |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

Reconstruction (+ increase with other latents) at each evaluation:

| condition | curve |
|---|---|
{curves}

{machine_markdown(info)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("condition", "gan"))
    parser.add_argument("--steps", type=int, default=None, help="300 (condition), 200 (gan)")
    parser.add_argument("--init", type=Path, default=None, help="the VAE to continue (gan)")
    parser.add_argument(
        "--config",
        type=Path,
        default=ROOT / "configs" / "vae-small.yaml",
        help="training settings and data of the continued runs (gan)",
    )
    parser.add_argument("--samples", type=int, default=64, help="segments per temperature and seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only (a smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    info = machine_info(("aurl", "torch"))
    with tempfile.TemporaryDirectory() as tmp:
        if args.part == "condition":
            steps = args.steps or 300
            result = {"steps": steps, "conditioning": conditioning(Path(tmp), steps)}
            name, text = "vae", render(result, info)
        else:
            if args.init is None:
                parser.error("gan needs --init VAE_FOLDER")
            result = gan(Path(tmp), args.steps or 200, args.init, args.config, args.samples)
            name, text = "vae_gan", render_gan(result, info)
    if not args.no_write:
        write_results(name, {**result, "machine": info}, text)
    print(text)


if __name__ == "__main__":
    main()
