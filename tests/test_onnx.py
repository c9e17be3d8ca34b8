"""ONNX export and the ONNX backend against their slow twin, the PyTorch decoder."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnx", reason="the ONNX tests need the onnx extra: pip install -e '.[onnx]'")
pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (the onnx extra)")

from aurl.api import load  # noqa: E402
from aurl.cli import main  # noqa: E402
from aurl.errors import ModelLoadError  # noqa: E402
from aurl.export.onnx import TOLERANCE, export_onnx, onnx_difference  # noqa: E402
from aurl.generate.engine import Engine, SamplingConfig, run  # noqa: E402
from aurl.generate.onnx_backend import load_onnx  # noqa: E402
from aurl.generate.sampler import sample  # noqa: E402
from aurl.models import load_model, save_model  # noqa: E402
from aurl.paths import SHIPPED_MODEL  # noqa: E402
from aurl.tokens import BOS, Tokenizer  # noqa: E402
from factories import debug_model  # noqa: E402

TK = Tokenizer()
CONTEXT = 64  # short, so that 100 new tokens restart the rows' contexts too


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random debug decoder's folder with its float32 export in ``model/onnx``."""
    root = tmp_path_factory.mktemp("onnx")
    model = debug_model(max_seq_len=CONTEXT)
    path = save_model(model, TK, root / "model")
    report = export_onnx(path, path / "onnx")
    return model, path, report


def greedy(model, prompts: list[torch.Tensor], tokens: int, vocab=TK.vocab, **config
           ) -> torch.Tensor:  # fmt: skip
    """Greedy rows from ``prompts`` through the Engine, ``tokens`` new tokens each."""
    engine = Engine(model, vocab, SamplingConfig(greedy=True, **config))
    engine.add(prompts, 10**6, tokens)
    run(engine)
    return engine.padded()


def prompts(*lengths: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return [torch.cat([torch.tensor([BOS]), torch.randint(4, 300, (n - 1,), generator=gen)])
            for n in lengths]  # fmt: skip


def test_export_writes_a_self_describing_folder(exported):
    _, path, report = exported
    names = sorted(p.name for p in (path / "onnx").iterdir())
    assert names == ["config.json", "onnx.json", "prefill.onnx", "step.onnx"]
    assert report["int8"] is False and report["twin_max_diff"] <= TOLERANCE
    assert (path / "onnx" / "config.json").read_text() == (path / "config.json").read_text()


def test_both_graphs_match_pytorch_on_rows_of_different_lengths(exported):
    model, path, report = exported
    assert report["onnx_max_diff"] <= TOLERANCE
    assert onnx_difference(model, path / "onnx") <= TOLERANCE  # prefill of 9, 4, 6; 2 steps


@torch.inference_mode()
def test_the_backend_and_its_cache_match_the_kv_cache(exported):
    model, path, _ = exported
    onnx = load_onnx(path).model
    ids = torch.randint(4, 300, (3, 8))
    lengths = torch.tensor([8, 2, 5])
    caches = model.new_cache(3, CONTEXT), onnx.new_cache(3, CONTEXT)
    want, got = (m(ids, cache=c, last_only=True, lengths=lengths) for m, c in zip((model, onnx),
                 caches, strict=True))  # fmt: skip
    assert (want - got).abs().max() <= TOLERANCE
    for t in range(3):
        tok = ids[:, t : t + 1]
        want, got = model(tok, cache=caches[0], last_only=True), onnx(tok, cache=caches[1])
        assert got.shape == (3, 1, model.config.vocab_size)
        assert (want - got).abs().max() <= TOLERANCE
    assert (onnx(ids[:1, :5]) - model(ids[:1, :5])).abs().max() <= TOLERANCE  # uncached


@torch.inference_mode()
def test_a_forgotten_token_leaves_both_caches_as_if_never_taken(exported):
    model, path, _ = exported  # what guidance's twins do at a control token
    onnx = load_onnx(path).model
    ids = torch.randint(4, 300, (2, 6))
    for m in (model, onnx):
        cache = m.new_cache(2, CONTEXT)
        m(ids[:, :4], cache=cache, last_only=True)
        m(ids[:, 4:5], cache=cache, last_only=True)
        cache.unwind(torch.tensor([1]))
        got = m(ids[:, 5:6], cache=cache, last_only=True)[:, -1]
        assert cache.pos.tolist() == [6, 5]
        skipped = torch.cat([ids[1, :4], ids[1, 5:]])[None]
        assert (got[0] - model(ids[:1])[0, -1]).abs().max() <= TOLERANCE
        assert (got[1] - model(skipped)[0, -1]).abs().max() <= TOLERANCE


def test_the_step_mask_kept_by_write_is_the_one_made_from_the_slots():
    """The cache keeps its step mask across steps (write marks the slot it fills) and makes it
    again after any row operation: at every step it equals the mask read from ``slot_pos``."""
    import numpy as np

    from aurl.generate.onnx_backend import OnnxCache

    def made(c: OnnxCache, slots: np.ndarray) -> np.ndarray:
        seen = c.slot_pos[:, : c.slots] >= 0
        seen[np.arange(c.batch), slots] = False
        return np.concatenate([seen, np.ones_like(seen[:, :1])], 1)

    cache = OnnxCache(2, 3, 2, 96, 4)
    keys = np.zeros((2, 3, 2, 10, 4), np.float32)
    cache.fill(keys, keys, np.array([10, 4, 7]))
    other = OnnxCache(2, 1, 2, 96, 4)
    other.fill(keys[:, :1, :, :3], keys[:, :1, :, :3], np.array([3]))
    for step in range(250):  # past the 96 slots: the ring wraps
        slots, mask = cache.step_mask()
        assert np.array_equal(mask[:, 0, 0], made(cache, slots)), step
        new = np.full((2, cache.batch, 2, 1, 4), step, np.float32)
        cache.write(new, new, slots)
        if step == 40:
            cache.unwind(np.array([1]))
        if step == 80:
            cache.select(np.array([2, 0, 0]))
        if step == 120:
            cache.put(np.array([1]), other)
        if step == 160:
            cache.extend(other)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_tokens_through_the_engine_are_pytorchs(exported, use_cache):
    model, path, _ = exported
    onnx = load_onnx(path).model
    rows = prompts(1, 9)
    want = greedy(model, rows, 100, use_cache=use_cache)
    got = greedy(onnx, rows, 100, use_cache=use_cache)
    assert want.shape[1] >= 64 + 9
    assert torch.equal(want, got)


def test_rows_joining_a_running_batch_and_beams_are_pytorchs(exported):
    model, path, _ = exported
    onnx = load_onnx(path).model
    outs = []
    for m in (model, onnx):  # extend and put: rows added to a running batch
        engine = Engine(m, TK.vocab, SamplingConfig(greedy=True))
        engine.add(prompts(3), 10**6, 40)
        for _ in range(10):
            engine.step()
        engine.add(prompts(5, 2), 10**6, [5, 30])  # one ends early and leaves the cache
        run(engine)
        outs.append(engine.padded())
    assert torch.equal(*outs)
    config = SamplingConfig(beams=3, greedy=True)  # select: beams reordered every step
    beams = [sample(m, TK.vocab, prompts(4)[0][None], 10**6, 30, config) for m in (model, onnx)]
    assert torch.equal(*beams)


def test_int8_export_mostly_agrees_with_pytorch(tmp_path):
    """On the shipped model: a random model's logits are too flat for its argmax to survive
    quantization noise."""
    report = export_onnx(SHIPPED_MODEL, tmp_path / "int8", int8=True)
    assert report["int8"] is True and report["onnx_max_diff"] < 1.0
    folder = load_model(SHIPPED_MODEL)
    weights = (tmp_path / "int8" / "step.onnx").stat().st_size
    assert weights < 2 * folder.model.num_params()  # float32 takes 4 bytes a weight
    opening = greedy(folder.model, [torch.tensor([BOS])], 8, vocab=folder.tokenizer.vocab)[0]
    rows = [opening[:1], opening]  # BOS, and BOS with the model's first 8 tokens
    int8 = load_onnx(tmp_path / "int8").model
    want, got = (greedy(m, rows, 100, vocab=folder.tokenizer.vocab) for m in (folder.model, int8))
    agree = float((want == got).float().mean())
    print(f"INT8 greedy tokens equal to PyTorch's: {agree:.1%}")
    assert agree >= 0.5


def test_export_refuses_unsupported_options_in_one_line(tmp_path, capsys):
    path = save_model(debug_model(window=16), TK, tmp_path / "windowed")
    assert main(["export", str(path), "--onnx", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "window" in err, err
    assert not (tmp_path / "out").exists()


def test_export_and_generate_with_the_onnx_backend(tmp_path, capsys):
    path = save_model(debug_model(max_seq_len=CONTEXT), TK, tmp_path / "model")
    assert main(["export", str(path), "--onnx", str(path / "onnx")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "prefill.onnx" in out and "max logit difference" in out
    args = ["generate", "--model", str(path), "--backend", "onnx", "--bars", "2", "--seed", "1",
            "--threads", "1", "--no-progress", "--out", str(tmp_path / "midi")]  # fmt: skip
    assert main(args) == 0
    assert list((tmp_path / "midi").glob("*.mid"))
    gen = load(path / "onnx", backend="onnx", threads=1)  # the ONNX folder itself works too
    assert gen.generate(bars=1, seed=1, sampling=SamplingConfig(greedy=True)).pieces


def test_loading_a_folder_without_an_export_says_how_to_make_one(tmp_path):
    path = save_model(debug_model(), TK, tmp_path / "model")
    with pytest.raises(ModelLoadError, match="aurl export"):
        load(path, backend="onnx", threads=1)
    with pytest.raises(ValueError, match="backend"):
        load(path, backend="tensorrt", threads=1)


def test_auto_takes_the_cached_export_of_exactly_these_weights(tmp_path, capsys, monkeypatch):
    from aurl.export.locate import default_export_dir, find_export
    from aurl.generate.onnx_backend import OnnxDecoder

    monkeypatch.setenv("AURL_CACHE_DIR", str(tmp_path / "cache"))  # no earlier export
    path = save_model(debug_model(max_seq_len=CONTEXT), TK, tmp_path / "model")
    assert find_export(path) is None
    assert not isinstance(load(path, backend="auto", threads=1).model, OnnxDecoder)
    assert main(["export", str(path)]) == 0  # no --onnx: the user cache
    assert str(default_export_dir(path)) in capsys.readouterr().out
    assert find_export(path) == default_export_dir(path)
    auto = load(path, backend="auto", threads=1)
    assert isinstance(auto.model, OnnxDecoder)
    greedy_cfg = SamplingConfig(greedy=True)
    torch_ids = (
        load(path, threads=1, backend="torch")
        .generate(bars=1, seed=1, sampling=greedy_cfg)
        .pieces[0]
        .ids
    )
    assert (
        auto.generate(bars=1, seed=1, sampling=greedy_cfg).pieces[0].ids.tolist()
        == torch_ids.tolist()
    )
    save_model(debug_model(max_seq_len=CONTEXT, seed=1), TK, tmp_path / "other")
    (path / "model.safetensors").write_bytes(
        (tmp_path / "other" / "model.safetensors").read_bytes()
    )
    assert find_export(path) is None  # retrained weights: the old export is not used
    assert not isinstance(load(path, backend="auto", threads=1).model, OnnxDecoder)
    assert main(["export", str(tmp_path / "missing")]) != 0
    assert "missing" in capsys.readouterr().err


def test_auto_exports_the_shipped_model_once_and_samples_as_pytorch_does():
    from aurl.export.locate import default_export_dir, find_export
    from aurl.generate.onnx_backend import OnnxDecoder
    from aurl.paths import SHIPPED_MODEL, SHIPPED_VAE

    auto = load(None, backend="auto", threads=1)  # made in the (test) cache if not there yet
    assert isinstance(auto.model, OnnxDecoder)
    assert find_export(SHIPPED_MODEL) == default_export_dir(SHIPPED_MODEL)
    sampling = SamplingConfig(top_p=0.95)
    mine = auto.generate(bars=2, num=2, sampling=sampling, seed=3).pieces
    theirs = load(None, backend="torch", threads=1).generate(bars=2, num=2, sampling=sampling,
                                                             seed=3).pieces  # fmt: skip
    assert [p.ids.tolist() for p in mine] == [p.ids.tolist() for p in theirs]
    assert find_export(SHIPPED_VAE) is None  # a VAE is not exported: PyTorch


def test_auto_makes_again_a_shipped_export_of_an_older_format():
    from aurl.export.locate import default_export_dir, export_format
    from aurl.export.onnx import FORMAT
    from aurl.paths import SHIPPED_MODEL

    load(None, backend="auto", threads=1)  # the export exists
    meta_path = default_export_dir(SHIPPED_MODEL) / "onnx.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": "aurl-onnx/1"}))
    assert export_format(meta_path.parent) == "aurl-onnx/1"
    load(None, backend="auto", threads=1)
    assert export_format(meta_path.parent) == FORMAT


def test_auto_falls_back_to_pytorch_from_a_broken_export(tmp_path, capfd, monkeypatch):
    from aurl.export.locate import find_export
    from aurl.generate.onnx_backend import OnnxDecoder

    monkeypatch.setenv("AURL_CACHE_DIR", str(tmp_path / "cache"))
    path = save_model(debug_model(max_seq_len=CONTEXT), TK, tmp_path / "model")
    export_onnx(path, path / "onnx")
    (find_export(path) / "step.onnx").write_bytes(b"not a graph")
    gen = load(path, backend="auto", threads=1)
    assert not isinstance(gen.model, OnnxDecoder) and gen.generate(bars=1, seed=1).pieces
    assert "generating with PyTorch" in capfd.readouterr().err
    with pytest.raises(ModelLoadError, match="cannot load the ONNX export"):
        load(path, backend="onnx", threads=1)  # asked for by name: the error stands
