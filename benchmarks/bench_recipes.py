"""What the training recipes buy, measured in likelihood (not speed): fine-tuning, distillation
and bf16 against fp32.

    .venv/bin/python benchmarks/bench_recipes.py [--steps 150] [--threads 2]

- Fine-tuning: 200 tunes of the Essen folksong collection (music21), folk melodies quite
  unlike the chorales. Test NLL on their test split of the shipped model as it is, of the
  shipped model fine-tuned with the `aurl finetune` preset for ``--steps`` steps, and of the
  same model shape and tokenizer trained from scratch for the same steps and settings.
- Distillation: a student of 2 layers, 128 wide, on the chorales for ``--steps`` steps, with
  the shipped model as teacher (three weightings and temperatures) and without it. Test NLL
  of each.
- Precision: the tiny preset on the chorales for 150 steps in fp32 and bf16 (autocast on
  the CPU): the validation curves side by side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from aurl.config import load_config
from aurl.data.prepare import prepare
from aurl.data.shards import Shard
from aurl.data.sources import resolve_source
from aurl.evaluate.likelihood import test_nll as split_nll
from aurl.models import load_model
from aurl.paths import SHIPPED_MODEL
from aurl.train.lm import train_run
from common import RESULTS_DIR, machine_info, machine_markdown, write_results

ROOT = Path(__file__).parents[1]
PRESET = ROOT / "src" / "aurl" / "presets" / "finetune.yaml"
QUIET = ["train.tensorboard=false"]
SETTINGS = [  # (label, alpha, temperature) of the distillation runs
    ("teacher, alpha 0.9, T 1 (the default)", 0.9, 1.0),
    ("teacher only, alpha 1, T 1", 1.0, 1.0),
    ("teacher, alpha 0.5, T 2", 0.5, 2.0),
]


def essen_folder(where: Path, tunes: int) -> Path:
    """A folder with the first ``tunes`` Essen tunes as MIDI files."""
    source = resolve_source("essen", 2, False, limit=tunes)
    folder = where / "essen200"
    folder.mkdir()
    for path in source.files:
        shutil.copy(path, folder / path.name)
    return folder


def finetuning(where: Path, steps: int) -> dict:
    folder = essen_folder(where, 200)
    shipped = load_model(SHIPPED_MODEL)
    config = load_config(PRESET, [f"train.max_steps={steps}", "train.early_stop.patience=0",
                                  *QUIET])  # fmt: skip
    data = config.data.model_copy(update={"source": str(folder)})
    config = config.model_copy(update={"model": shipped.model.config,
                                       "tokenizer": shipped.tokenizer.config, "data": data})  # fmt: skip
    dataset = prepare(resolve_source(str(folder), 2, False), shipped.tokenizer, progress=False)
    test = Shard(dataset.split("test"))
    before, n = split_nll(shipped, test, "cpu")
    tuned = train_run(config, where / "finetuned", progress=False, init_from=shipped)
    scratch = train_run(config, where / "scratch", progress=False)
    return {
        "tunes": 200, "steps": steps, "test_tokens": n,
        "splits": {s: Shard(dataset.split(s)).num_pieces for s in ("train", "val", "test")},
        "test_nll": {"shipped model": round(before, 4),
                     "fine-tuned": tuned["metrics"]["test_nll_per_token"],
                     "same steps from scratch": scratch["metrics"]["test_nll_per_token"]},
    }  # fmt: skip


def distillation(where: Path, steps: int) -> dict:
    teacher = load_model(SHIPPED_MODEL)
    student = ["model.n_layer=2", "model.n_embd=128", "model.n_head=4", "data.seq_len=256",
               "train.batch_size=8", f"train.max_steps={steps}", "train.eval_every=50",
               "train.warmup_steps=15", *QUIET]  # fmt: skip
    config = load_config(ROOT / "configs" / "small.yaml", student)
    config = config.model_copy(update={"tokenizer": teacher.tokenizer.config})
    nll = {}
    for label, alpha, temperature in SETTINGS:
        run = where / f"taught-{alpha}-{temperature}"
        meta = train_run(config, run, progress=False, teacher=teacher, distill_alpha=alpha,
                         distill_temperature=temperature)  # fmt: skip
        nll[label] = meta["metrics"]["test_nll_per_token"]
    alone = train_run(config, where / "alone", progress=False)
    nll["without the teacher"] = alone["metrics"]["test_nll_per_token"]
    return {
        "student": {"parameters": alone["parameters"], "layers": 2, "width": 128},
        "teacher_parameters": teacher.meta.get("parameters"), "steps": steps, "test_nll": nll,
    }  # fmt: skip


def precision(where: Path, _steps: int) -> dict:
    curves = {}
    for p in ("fp32", "bf16"):
        config = load_config(ROOT / "configs" / "tiny.yaml", [
            "train.max_steps=150", "train.eval_every=25", "train.eval_windows=32",
            "train.warmup_steps=10", f"train.precision={p}", *QUIET])  # fmt: skip
        train_run(config, where / p, progress=False)
        lines = (where / p / "metrics.jsonl").read_text().splitlines()
        curves[p] = [(r["step"], r["val_loss"]) for r in map(json.loads, lines) if "val_loss" in r]
    diffs = [abs(a[1] - b[1]) for a, b in zip(curves["fp32"], curves["bf16"], strict=True)]
    return {"curves": curves, "max_abs_diff": round(max(diffs), 4)}


def render(r: dict) -> str:
    f, d, p = r["finetune"], r["distill"], r["precision"]
    ft = "\n".join(f"| {k} | {v:.4f} |" for k, v in f["test_nll"].items())
    ds = "\n".join(f"| {k} | {v:.4f} |" for k, v in d["test_nll"].items())
    pc = "\n".join(f"| {a[0]} | {a[1]:.4f} | {b[1]:.4f} |"
                   for a, b in zip(p["curves"]["fp32"], p["curves"]["bf16"], strict=True))  # fmt: skip
    return f"""# Training recipes: fine-tuning, distillation, bf16

## Fine-tuning the shipped model on 200 Essen folk tunes

`aurl finetune` preset, {f["steps"]} steps; splits {f["splits"]} pieces; test NLL in nats per
token over {f["test_tokens"]:,} tokens of the tunes' test split.

| model | test NLL |
|---|---|
{ft}

## Distillation from the shipped model

Student {d["student"]["parameters"]:,} parameters ({d["student"]["layers"]} layers,
{d["student"]["width"]} wide), teacher {d["teacher_parameters"]:,}; {d["steps"]} steps of 8
windows of 256 tokens on the chorales; alpha weighs the teacher's term (the data's
cross-entropy gets 1 - alpha), T softens both distributions. Test NLL on the chorales.

| student | test NLL |
|---|---|
{ds}

## bf16 against fp32 (tiny preset, chorales, 150 steps)

Largest difference of the validation loss: {p["max_abs_diff"]}.

| step | fp32 val loss | bf16 val loss |
|---|---|---|
{pc}

{machine_markdown(r["machine"])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--parts", default="finetune,distill,precision",
                        help="which measurements to run again (the others are kept)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS_DIR
    earlier = out / "recipes.json"
    results = json.loads(earlier.read_text()) if earlier.is_file() else {}
    parts = {"finetune": finetuning, "distill": distillation, "precision": precision}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts.split(","):
            results[name] = parts[name](Path(tmp), args.steps)
    results["machine"] = machine_info(("aurl", "torch"))
    write_results("recipes", results, render(results), out)
    print(render(results))


if __name__ == "__main__":
    main()
