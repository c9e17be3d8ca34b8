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


def test_attention_is_measured_once_and_the_type_can_be_forced(monkeypatch, tmp_path):
    import aurl.models.calibration as calibration

    monkeypatch.setenv("AURL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "_bf16_instructions", lambda: True)
    calls = []

    def timings(n_head, head_dim, names):
        calls.append((n_head, head_dim, names))
        fast = {"float32/sdpa": 9.0, "float32/matmul": 5.0, "bfloat16/sdpa": 7.0,
                "bfloat16/matmul": 3.0}  # fmt: skip
        return {k: v for k, v in fast.items() if k.split("/")[0] in names}

    monkeypatch.setattr(calibration, "attention_timings", timings)
    cpu = torch.device("cpu")
    best = calibration.AttentionChoice(torch.bfloat16, "matmul")
    assert calibration.fast_attention(cpu, CFG) == best
    assert calibration.fast_attention(cpu, CFG) == best
    assert calls == [(4, 16, ["float32", "bfloat16"])]  # measured once, then remembered
    monkeypatch.setenv("AURL_ATTENTION_DTYPE", "float32")
    assert calibration.fast_attention(cpu, CFG) == calibration.AttentionChoice(None, "matmul")
    monkeypatch.setenv("AURL_ATTENTION_DTYPE", "half")
    with pytest.raises(ValueError, match="AURL_ATTENTION_DTYPE"):
        calibration.fast_attention(cpu, CFG)
    m = model()
    monkeypatch.delenv("AURL_ATTENTION_DTYPE")
    assert calibration.use_fastest_attention(m, cpu) == best
    assert m.attention_dtype == torch.bfloat16 and m.decode_kernel == "matmul"


@pytest.mark.parametrize("kernel", ["sdpa", "matmul"])
def test_both_decode_kernels_equal_the_full_forward(kernel):
    m = debug_model(max_seq_len=64, window=16)
    m.set_decode_kernel(kernel)
    x = torch.randint(3, CFG.vocab_size, (3, 50))
    with torch.no_grad():
        full = m(x)
        cache = m.new_cache(3)
        lengths = torch.tensor([10, 20, 30])  # rows at different positions: masked keys
        first = m(x[:, :30], cache=cache, lengths=lengths, last_only=True)
        steps = [m(x[torch.arange(3), lengths + t][:, None], cache=cache) for t in range(15)]
    for r in range(3):
        n = int(lengths[r])
        assert torch.allclose(first[r, 0], full[r, n - 1], atol=1e-5)
        assert all(torch.allclose(steps[t][r, 0], full[r, n + t], atol=1e-5) for t in range(15))


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
