"""Transformer: the KV cache path equals the full forward; model folders round-trip."""

from __future__ import annotations

import json

import pytest
import torch

from aurl.losses import next_token_cross_entropy
from aurl.models import Transformer, TransformerConfig, load_model, save_model
from aurl.models.folder import ModelLoadError
from aurl.tokens import Tokenizer
from factories import debug_model

CFG = TransformerConfig(vocab_size=545, n_layer=2, n_head=4, n_embd=64, max_seq_len=128)


def model() -> Transformer:
    return debug_model(**CFG.model_dump())


@pytest.mark.parametrize("batch", [1, 3])
def test_cache_prefill_then_50_steps_equals_full_forward(batch):
    m = model()
    x = torch.randint(0, CFG.vocab_size, (batch, 80))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(batch)
        steps = [m(x[:, :30], cache=cache)]
        steps += [m(x[:, t : t + 1], cache=cache) for t in range(30, 80)]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_cache_chunk_after_prefix_equals_full_forward():
    m = model()
    x = torch.randint(0, CFG.vocab_size, (2, 60))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2)
        parts = [m(x[:, :25], cache=cache), m(x[:, 25:40], cache=cache),
                 m(x[:, 40:], cache=cache)]  # fmt: skip
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_last_only_and_loss():
    m = model()
    x = torch.randint(3, CFG.vocab_size, (2, 20))
    with torch.no_grad():
        assert torch.allclose(m(x, last_only=True)[:, -1], m(x)[:, -1], atol=1e-6)
        logits = m(x)
    y = x.clone()
    y[0, :5] = 0  # PAD targets count for nothing
    loss = next_token_cross_entropy(logits, y)
    keep = y.reshape(-1) != 0
    logp = torch.log_softmax(logits.reshape(-1, CFG.vocab_size), -1)[keep]
    expected = -logp.gather(1, y.reshape(-1, 1)[keep]).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="max_seq_len"):
        model()(torch.zeros(1, CFG.max_seq_len + 1, dtype=torch.long))


def test_bad_shape_config_is_refused():
    with pytest.raises(ValueError, match="heads"):
        TransformerConfig(n_embd=30, n_head=4)


def test_model_folder_round_trip(tmp_path):
    m, tk = model(), Tokenizer()
    save_model(m, tk, tmp_path / "m", {"metrics": {"val_nll_per_token": 1.5}})
    again = load_model(tmp_path / "m")
    x = torch.randint(0, CFG.vocab_size, (1, 16))
    with torch.no_grad():
        assert torch.equal(again.model(x), m(x))
    assert again.model.head.weight.data_ptr() == again.model.embed.weight.data_ptr()
    assert again.meta["metrics"]["val_nll_per_token"] == 1.5
    assert again.tokenizer.config == tk.config
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]


def test_half_precision_folder_is_smaller_and_close(tmp_path):
    m, tk = model(), Tokenizer()
    save_model(m, tk, tmp_path / "full")
    save_model(m, tk, tmp_path / "half", dtype=torch.float16)
    size = lambda name: (tmp_path / name / "model.safetensors").stat().st_size  # noqa: E731
    assert size("half") < 0.55 * size("full")
    again = load_model(tmp_path / "half").model
    x = torch.randint(0, CFG.vocab_size, (1, 16))
    with torch.no_grad():
        assert next(again.parameters()).dtype == torch.float32
        assert torch.allclose(again(x), m(x), atol=2e-2)


def test_broken_model_folders_raise(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(tmp_path)
    save_model(model(), Tokenizer(), tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["model"]["n_embd"] = 128
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_model(tmp_path / "m")


def test_bfloat16_attention_keeps_cache_and_full_forward_together():
    m = model()
    m.set_attention_dtype(torch.bfloat16)
    x = torch.randint(0, CFG.vocab_size, (2, 70))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(2)
        assert cache.k.dtype == torch.bfloat16
        steps = [m(x[:, :20], cache=cache)]
        steps += [m(x[:, t : t + 1], cache=cache) for t in range(20, 70)]
        reference = model()(x)  # float32 attention
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=2e-2)
    assert torch.allclose(full, reference, atol=5e-2)
    m.train()  # training always attends in the weights' type
    assert m.new_cache(1).k.dtype == torch.float32


def test_attention_dtype_is_measured_once_and_can_be_forced(monkeypatch, tmp_path):
    import aurl.device as device

    monkeypatch.setenv("AURL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(device, "_bf16_instructions", lambda: True)
    calls = []
    monkeypatch.setattr(device, "attention_speed_ratio",
                        lambda *a: calls.append(a) or 0.5)  # fmt: skip
    cpu = torch.device("cpu")
    assert device.fast_attention_dtype(cpu, CFG) == torch.bfloat16  # faster: taken
    assert device.fast_attention_dtype(cpu, CFG) == torch.bfloat16
    assert calls == [(4, 16)]  # measured once for this shape, then remembered
    monkeypatch.setattr(device, "attention_speed_ratio", lambda *a: 2.5)
    assert device.fast_attention_dtype(cpu, CFG.model_copy(update={"n_head": 2})) is None
    monkeypatch.setenv("AURL_ATTENTION_DTYPE", "bfloat16")
    assert device.fast_attention_dtype(cpu, CFG.model_copy(update={"n_head": 2})) == torch.bfloat16
    monkeypatch.setenv("AURL_ATTENTION_DTYPE", "float32")
    assert device.fast_attention_dtype(cpu, CFG) is None
    monkeypatch.setenv("AURL_ATTENTION_DTYPE", "half")
    with pytest.raises(ValueError, match="AURL_ATTENTION_DTYPE"):
        device.fast_attention_dtype(cpu, CFG)


def test_generation_threads_take_the_idle_cores_or_what_they_are_told(monkeypatch):
    import aurl.device as device

    monkeypatch.setattr(device, "_busy_cores", lambda s: 0.0)
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert device.generation_threads() == 2
    monkeypatch.setattr(device, "_busy_cores", lambda s: 1.2)  # a neighbour on one core
    assert device.generation_threads() == 1
    monkeypatch.setattr(device, "_busy_cores", lambda s: 2.0)
    assert device.generation_threads() == 1  # never none
    monkeypatch.setenv("AURL_THREADS", "3")
    assert device.generation_threads() == 3
    monkeypatch.setenv("AURL_THREADS", "many")
    with pytest.raises(ValueError, match="AURL_THREADS"):
        device.generation_threads()
