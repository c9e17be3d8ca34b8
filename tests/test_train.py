"""Training: the loss falls, the model folder is exported, and a killed run resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aurl.cli import main
from aurl.config import ConfigError, load_config
from aurl.data.split import split_of
from aurl.models import build_model, load_model
from aurl.paths import CHORALE_MODEL
from aurl.train import lm
from aurl.train.schedule import lr_at
from factories import tiny_config

TINY = Path(__file__).parents[1] / "configs" / "tiny.yaml"


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_exports(tiny_run):
    records = metrics(tiny_run)
    losses = [r["loss"] for r in records if "loss" in r]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert losses[-1] < losses[0] - 0.5
    assert vals[-1] < vals[0]
    folder = load_model(tiny_run / "model")
    meta = folder.meta
    assert meta["training"]["steps"] > 0 and meta["parameters"] == folder.model.num_params()
    assert {"val_nll_per_token", "test_nll_per_token"} <= set(meta["metrics"])
    assert (tiny_run / "config.yaml").is_file()


def test_resume_continues_the_same_curve(small_corpus, tmp_path, monkeypatch):
    config = load_config(TINY, [f"data.source={small_corpus}", "train.max_steps=20",
                                "train.checkpoint_every=10", "train.eval_every=10", "model.dropout=0.1"])  # fmt: skip
    straight = tmp_path / "straight"
    lm.train_run(config, straight, progress=False)

    killed = tmp_path / "killed"
    real_call = lm.BatchFeed.__call__

    def dies_at_step_13(self, step, micro=0):
        if step == 13:
            raise KeyboardInterrupt  # as if the process were killed after the step-10 checkpoint
        return real_call(self, step, micro)

    monkeypatch.setattr(lm.BatchFeed, "__call__", dies_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        lm.train_run(config, killed, progress=False)
    monkeypatch.setattr(lm.BatchFeed, "__call__", real_call)
    with pytest.raises(ConfigError, match="already there"):
        lm.train_run(config, killed, progress=False)
    lm.train_run(config, killed, resume=True, progress=False)

    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # no duplicated lines after resume
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "val_loss"):
            if key in ra:
                assert ra[key] == pytest.approx(rb[key], abs=1e-5), (ra, rb)
    wa = load_model(straight / "model").model.state_dict()
    wb = load_model(killed / "model").model.state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        lm.train_run(load_config(TINY), tmp_path / "none", resume=True, progress=False)


def test_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 1.0, 0.1, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(TINY, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"model\.nope"):
        load_config(TINY, ["model.nope=3"])
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        load_config(TINY, ["train.lr"])


def test_accumulated_micro_batches_update_as_one_batch(small_corpus, tmp_path):
    """Two micro-batches of 2 windows give the update of one batch of 4 (PAD-aware weights)."""
    steps = ["train.max_steps=3", "train.eval_every=3", "train.log_every=1"]
    lm.train_run(
        tiny_config(small_corpus, "train.batch_size=4", *steps), tmp_path / "a", progress=False
    )
    lm.train_run(tiny_config(small_corpus, "train.batch_size=2", "train.grad_accum=2", *steps),
                 tmp_path / "b", progress=False)  # fmt: skip
    wa, wb = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["model"] for r in "ab")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    la, lb = ([r["loss"] for r in metrics(tmp_path / r) if "loss" in r] for r in "ab")
    assert la == pytest.approx(lb, abs=1e-5)


def test_bf16_trains_close_to_fp32_and_fp16_needs_cuda(small_corpus, tmp_path):
    steps = ["train.max_steps=12", "train.eval_every=12", "train.log_every=4"]
    fp32 = lm.train_run(tiny_config(small_corpus, *steps), tmp_path / "fp32", progress=False)
    bf16 = lm.train_run(tiny_config(small_corpus, *steps, "train.precision=bf16"), tmp_path / "bf16",
                        progress=False)  # fmt: skip
    assert bf16["training"]["precision"] == "bf16"
    a, b = fp32["metrics"]["val_nll_per_token"], bf16["metrics"]["val_nll_per_token"]
    assert abs(a - b) < 0.05 * a, (a, b)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
            lm.train_run(tiny_config(small_corpus, "train.precision=fp16"), tmp_path / "fp16",
                         progress=False)  # fmt: skip


def test_model_folder_names_its_arch_and_keeps_meta_apart(tiny_run):
    config = json.loads((tiny_run / "model" / "config.json").read_text())
    assert config["arch"] == "decoder" and config["model"]["arch"] == "decoder"
    assert {"metrics", "training", "data_fingerprint"} <= set(config["meta"])
    assert not {"metrics", "training"} & set(config)  # metadata never mixes with the fields
    assert config["meta"]["training"]["seq_len"] == 64
    shipped = json.loads((CHORALE_MODEL / "config.json").read_text())
    assert "arch" not in shipped and "meta" not in shipped  # written before both: still loads
    assert load_model(CHORALE_MODEL).meta["metrics"]["test_nll_per_token"] > 0
    with pytest.raises(ConfigError, match=r"unknown model arch 'gpt5' \(known: decoder, vae\)"):
        load_config(TINY, ["model.arch=gpt5"])


def test_tensorboard_shows_scalars_and_a_sample(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tb"))
    events.Reload()
    assert {"train/ce", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/val_loss",
            "sample/grammatical"} <= set(events.Tags()["scalars"])  # fmt: skip
    (image,) = events.Images("sample/piano_roll")[-1:]
    assert image.width > 10 and image.height > 10


def test_resume_takes_safe_overrides_and_refuses_others(small_corpus, tmp_path, capsys):
    runs = ["--runs-dir", str(tmp_path), "--name", "r", "--quiet"]
    base = ["--config", TINY, *runs, f"data.source={small_corpus}", "train.max_steps=4",
            "train.eval_every=2", "train.tensorboard=false", "train.eval_windows=2"]  # fmt: skip
    assert main(["train", *base]) == 0
    assert main(["train", "--config", TINY, *runs, "--resume", "model.n_layer=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "override model.n_layer=3" in err[0] and "cannot change" in err[0]
    assert main(["train", "--config", TINY, *runs, "--resume", "train.max_steps=6"]) == 0
    assert [r["step"] for r in metrics(tmp_path / "r") if "loss" in r][-1] == 6
    assert load_config(tmp_path / "r" / "config.yaml").train.max_steps == 6
    assert main(["train", "--config", TINY, *runs, "trian.lr=0.1"]) == 2
    assert "did you mean train.lr?" in capsys.readouterr().err
    assert main(["train", "--config", TINY, *runs, "train.seed=99999999999999999999"]) == 2
    assert main(["train", "--config", TINY, *runs, "train.grad_accum=0"]) == 2
    assert "override train.grad_accum=0" in capsys.readouterr().err


def test_finetune_and_distill_start_from_a_model(tiny_run, small_corpus, tmp_path):
    quick = ["train.max_steps=4", "train.eval_every=2", "train.warmup_steps=1",
             "train.tensorboard=false", "train.eval_windows=2", "train.early_stop.patience=0"]  # fmt: skip
    runs = ["--runs-dir", str(tmp_path), "--quiet"]
    assert main(["finetune", str(small_corpus), "--model", str(tiny_run), *runs, *quick]) == 0
    tuned = load_model(tmp_path / "finetune" / "model")
    teacher = load_model(tiny_run / "model")
    assert tuned.model.config == teacher.model.config
    assert tuned.tokenizer.to_dict() == teacher.tokenizer.to_dict()
    assert tuned.meta["finetuned_from"].endswith("model")
    assert main(["distill", "--teacher", str(tiny_run), "--config", TINY, "--name", "student",
                 *runs, f"data.source={small_corpus}", "model.n_embd=16", *quick]) == 0  # fmt: skip
    student = [r for r in metrics(tmp_path / "student") if "loss" in r]
    assert {"ce", "distill"} <= set(student[-1])
    assert load_model(tmp_path / "student" / "model").model.config.n_embd == 16
    assert main(["train", "--config", TINY, "--init", str(tiny_run), "--name", "layout", *runs,
                 f"data.source={small_corpus}", "tokenizer.infill_context=1", *quick]) == 0  # fmt: skip
    relaid = load_model(tmp_path / "layout" / "model").tokenizer.config
    assert relaid == teacher.tokenizer.config.model_copy(update={"infill_context": 1})


@pytest.mark.parametrize("preset,low,high", [("medium", 20e6, 30e6), ("large", 85e6, 115e6)])
def test_gpu_presets_have_their_size(preset, low, high):
    config = load_config(Path(__file__).parents[1] / "configs" / f"{preset}.yaml")
    with torch.device("meta"):  # shapes only, no memory
        ids = {"vocab_size": 641, "bar_id": 16, "position_ids": (32, 96)}  # as training sets them
        model = build_model(config.model.model_copy(update=ids))
    assert low < sum(p.numel() for p in model.parameters()) < high
    assert config.model.max_seq_len == config.data.seq_len == 2048


def test_a_folder_with_no_usable_midi_fails_at_prepare(tmp_path, capsys):
    (tmp_path / "junk.mid").write_bytes(b"not midi at all")
    assert main(["prepare", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no usable MIDI" in err and tmp_path.name in err and "no MThd" in err


def test_a_corpus_without_a_validation_split_says_it_validates_on_training_data(
    small_corpus, tmp_path
):
    folder = tmp_path / "few"
    folder.mkdir()
    train_only = [p for p in sorted(small_corpus.iterdir()) if split_of(p.stem) == "train"][:3]
    for path in train_only:
        (folder / path.name).write_bytes(path.read_bytes())
    said: list[str] = []
    config = tiny_config(folder, "train.max_steps=2", "train.eval_every=2")
    meta = lm.train_run(config, tmp_path / "run", progress=False, log=said.append)
    assert said == [f"{folder}: too small for a validation split; validating on training data"]
    assert meta["metrics"]["val_nll_per_token"] > 0 and "test_nll_per_token" not in meta["metrics"]


def test_the_attention_options_train_export_and_generate(small_corpus, tmp_path):
    """Hierarchical attention with musical positions: the tokenizer's ids reach the model,
    the folder keeps them, and the exported model generates legal music."""
    from aurl.api import load
    from aurl.tokens import Tokenizer, TokenType

    options = ["model.window=32", "model.bar_summaries=true", "model.musical_positions=true",
               "train.max_steps=4", "train.eval_every=4"]  # fmt: skip
    lm.train_run(tiny_config(small_corpus, *options), tmp_path / "run", progress=False)
    folder = load_model(tmp_path / "run" / "model")
    cfg, vocab = folder.model.config, Tokenizer().vocab
    assert cfg.bar_id == vocab.offsets[TokenType.BAR] and cfg.position_ids[1] == 96
    assert cfg.window == 32 and cfg.bar_summaries and cfg.musical_positions
    piece = load(tmp_path / "run").generate(bars=2, seed=0).pieces[0]
    assert Tokenizer().grammar.validate(piece.ids) is None


def test_model_mode_spells_arch_and_the_discriminator():
    root = Path(__file__).parents[1] / "configs"
    gan = load_config(root / "vae-gan.yaml")
    assert gan.model.arch == "vae" and gan.train.gan.enabled
    assert load_config(root / "small.yaml", ["model.mode=transformer"]).model.arch == "decoder"
    vae = load_config(root / "vae-small.yaml", ["model.mode=vae"])
    assert vae.model.arch == "vae" and not vae.train.gan.enabled
    with pytest.raises(ConfigError, match="not one of transformer, vae, vae_gan"):
        load_config(root / "small.yaml", ["model.mode=gan"])
    with pytest.raises(ConfigError, match="contradicts model.arch vae"):
        load_config(root / "vae-small.yaml", ["model.mode=transformer"])
