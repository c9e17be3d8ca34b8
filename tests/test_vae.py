"""The VAE: cached decoding with a latent equals the full forward, the encoder ignores
padding, the KL terms match a hand computation, model folders round-trip, and a tiny VAE
learns to reconstruct."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aurl.losses import gaussian_kl, kl_free_bits
from aurl.models import load_model, save_model
from aurl.models.vae import VAE, VAEConfig, bar_index, part_index
from aurl.paths import CHORALE_MODEL, SHIPPED_MODEL
from aurl.tokens import BOS, PAD, Tokenizer, TokenType
from aurl.train.schedule import beta_at
from factories import debug_model

TK = Tokenizer()
BAR = int(TK.vocab.offsets[TokenType.BAR])
POSITIONS = (int(TK.vocab.offsets[TokenType.POSITION]), int(TK.vocab.counts[TokenType.POSITION]))


def vae(**shape) -> VAE:
    """A debug VAE; with per-token conditioning, its projection is the identity (it starts at
    zero, which would leave the per-token path untested)."""
    m = debug_model("vae", bars=2, z_global=8, z_bar=4, bar_id=BAR, **shape)
    if hasattr(m, "to_tokens"):
        torch.nn.init.eye_(m.to_tokens.weight)
    return m


def segments(batch: int = 2, length: int = 40) -> torch.Tensor:
    """Random ids with Bar tokens at fixed places and PAD at the end of the second row."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(BAR + 1, TK.vocab_size, (batch, length), generator=g)
    ids[:, 0], ids[:, 1], ids[:, 15] = BOS, BAR, BAR
    ids[1, 30:] = PAD
    return ids


def test_bar_index_counts_bars_and_clamps():
    ids = torch.tensor([[BOS, BAR, 50, BAR, 60, BAR, 70]])
    assert bar_index(ids, BAR, 2).tolist() == [[0, 0, 0, 1, 1, 1, 1]]


@pytest.mark.parametrize(
    "shape",
    [{"condition": "prefix"}, {"condition": "tokens"}, {"condition": "layers"},
     {"condition": "layers", "slots": 2, "slot_steps": 6, "position_ids": POSITIONS}],
)  # fmt: skip
def test_cached_decoding_with_a_latent_equals_the_full_forward(shape):
    from aurl.models.vae import LatentDecoder

    m, ids = vae(**shape), segments()
    with torch.no_grad():
        zg, zb = m.encode(ids).mean()
        full = m.decode(ids, zg, zb)  # (B, T, V)
        decoder = LatentDecoder(m, zg, zb)
        assert torch.allclose(decoder(ids), full, atol=1e-5)
        cache = decoder.new_cache(ids.shape[0])
        parts = [decoder(ids[:, :10], cache=cache)]  # a prefill holding the first Bar
        for t in range(10, ids.shape[1]):  # then one token at a time, across the second Bar
            parts.append(decoder(ids[:, t : t + 1], cache=cache))
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_token_conditioning_reads_each_bars_own_latent():
    """With ``tokens``, changing bar 1's latent changes the logits of bar 1's tokens far more
    than a prefix alone does (the vector is in their embeddings); its projection starts at
    zero, where the two are the same model."""
    fresh = debug_model("vae", bars=2, z_global=8, z_bar=4, bar_id=BAR, condition="tokens")
    assert not fresh.to_tokens.weight.any()
    ids = segments()
    moved = {}
    for condition in ("prefix", "tokens"):
        m = vae(condition=condition)
        with torch.no_grad():
            zg, zb = m.encode(ids).mean()
            other = zb.clone()
            other[:, 1] += 3.0
            delta = (m.decode(ids, zg, other) - m.decode(ids, zg, zb)).abs()
        moved[condition] = delta[0, 16:].mean().item()  # bar 1 starts at index 15
    assert moved["tokens"] > 5 * moved["prefix"]


def position(step: int) -> int:
    return POSITIONS[0] + step


def test_part_index_follows_bars_and_beats():
    """Two slots of 12 steps: a token reads the part of its bar and of its last Position's
    step (the last slot takes the rest of a long bar; Bar starts a bar at slot 0)."""
    m = vae(condition="layers", slots=2, slot_steps=12, position_ids=POSITIONS)
    note = int(TK.vocab.offsets[TokenType.PITCH]) + 60
    ids = torch.tensor([[BOS, BAR, position(0), note, position(12), note, position(30), note,
                         BAR, note, position(6), note, position(13)]])  # fmt: skip
    expect = [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]]
    assert part_index(ids, m.config).tolist() == expect
    # a cached continuation carries the bar count and the step of what came before
    later = part_index(ids[:, 10:], m.config, torch.tensor([2]), torch.tensor([4]))
    assert later.tolist() == [expect[0][10:]]
    assert part_index(ids[:, 9:10], m.config, torch.tensor([2]), torch.tensor([13])).item() == 3


def test_slot_conditioning_reads_each_parts_own_latent():
    """Moving the second part of bar 0's latent changes the logits of the tokens in its
    stretch far more than those before it (which see it only through the prefix)."""
    m = vae(condition="tokens", slots=2, slot_steps=12, position_ids=POSITIONS)
    note = int(TK.vocab.offsets[TokenType.PITCH]) + 60
    ids = torch.tensor([[BOS, BAR, position(0), note, note, note, position(12), note, note]])
    with torch.no_grad():
        zg, zb = m.encode(ids).mean()
        other = zb.clone()
        other[:, 0, 2:] += 3.0  # z_bar 4 in 2 parts: the second part of bar 0
        delta = (m.decode(ids, zg, other) - m.decode(ids, zg, zb)).abs()[0].mean(-1)
    assert delta[6:].mean() > 5 * delta[:6].mean()


def test_slots_are_checked():
    with pytest.raises(ValueError, match="split into slots"):
        VAEConfig(vocab_size=64, z_bar=6, slots=4, condition="layers")
    with pytest.raises(ValueError, match="condition"):
        VAEConfig(vocab_size=64, z_bar=8, slots=2)
    cfg = VAEConfig(vocab_size=64, z_bar=8, slots=2, condition="layers")
    with pytest.raises(ValueError, match="position_ids"):
        part_index(torch.tensor([[BOS, BAR]]), cfg)


def test_a_vae_starts_from_a_language_model():
    """The decoder takes all of the LM's weights (with latents that add nothing, it is the
    LM), the encoder its embedding and first blocks; a model of another width is refused."""
    lm = debug_model(seed=3, max_seq_len=64)
    m = debug_model("vae", bars=2, z_global=8, z_bar=4, bar_id=BAR, condition="layers",
                    enc_layers=1, max_seq_len=64)  # fmt: skip
    m.start_from(lm)
    ids = segments()
    assert torch.equal(m.decoder(ids), lm(ids))
    assert torch.equal(m.enc_embed.weight, lm.embed.weight)
    for a, b in zip(m.enc_blocks[0].parameters(), lm.blocks[0].parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not fit"):
        m.start_from(debug_model(n_embd=16))


@pytest.mark.parametrize("shape", [{}, {"condition": "layers", "slots": 2, "slot_steps": 6,
                                        "position_ids": POSITIONS}])  # fmt: skip
def test_the_encoder_ignores_padding(shape):
    m, ids = vae(**shape), segments()
    longer = torch.cat([ids, torch.full((2, 12), PAD)], 1)
    with torch.no_grad():
        a, b = m.encode(ids), m.encode(longer)
        one = m.encode(ids[1:, :30])
    assert torch.allclose(a.mu_global, b.mu_global, atol=1e-5)
    assert torch.allclose(a.mu_bar, b.mu_bar, atol=1e-5)
    assert torch.allclose(a.mu_global[1:], one.mu_global, atol=1e-5)


def test_kl_terms_match_a_hand_computation():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[math.log(2.0), 0.0]])
    by_hand = [0.5 * (0.25 + 2.0 - 1 - math.log(2.0)), 0.5 * 1.0]
    assert gaussian_kl(mu, logvar)[0].tolist() == pytest.approx(by_hand)
    assert float(kl_free_bits(mu, logvar)) == pytest.approx(sum(by_hand))
    assert float(kl_free_bits(mu, logvar, free_bits=0.4)) == pytest.approx(0.4 + 0.5)
    batch_mu, batch_lv = torch.stack([mu[0], -mu[0]]), torch.stack([logvar[0], logvar[0]])
    assert float(kl_free_bits(batch_mu, batch_lv)) == pytest.approx(sum(by_hand))


def test_beta_schedules():
    assert [beta_at(s, "linear", 0.5, 4) for s in (0, 2, 4, 9)] == [0, 0.25, 0.5, 0.5]
    assert [beta_at(s, "cyclical", 1.0, 2, 4) for s in (0, 1, 3, 4, 5)] == [0, 0.5, 1, 0, 0.5]
    assert beta_at(7, "constant", 0.3, 10) == 0.3


def test_model_folder_round_trip(tmp_path):
    m, ids = vae(), segments()
    save_model(m, TK, tmp_path / "vae", {"note": "test"})
    back = load_model(tmp_path / "vae")
    assert isinstance(back.model, VAE) and back.meta == {"note": "test"}
    with torch.no_grad():
        a = m(ids, sample=False).logits
        b = back.model(ids, sample=False).logits
    assert torch.allclose(a, b, atol=1e-6)
    assert back.model.decoder.head.weight is back.model.decoder.embed.weight  # still tied


def test_a_tiny_vae_learns_to_reconstruct_and_logs_every_term(small_corpus, tmp_path):
    import json

    from aurl.config import load_config
    from aurl.train.lm import train_run

    preset = Path(__file__).parents[1] / "configs" / "vae-tiny.yaml"
    config = load_config(preset, [f"data.source={small_corpus}", "train.max_steps=12",
                                  "train.eval_every=6", "train.log_every=2",
                                  "train.tensorboard=false"])  # fmt: skip
    meta = train_run(config, tmp_path / "vae", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "vae" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "rec" in r]
    assert {"rec", "kl_global", "kl_bar", "loss"} <= set(steps[0])
    vals = [r for r in lines if "val_rec" in r]
    assert vals[-1]["val_rec"] < vals[0]["val_rec"]
    for key in ("active_global", "active_bar", "rec_shuffled_gap", "kl_per_dim_max"):
        assert key in vals[-1]
    folder = load_model(tmp_path / "vae" / "model")
    assert isinstance(folder.model, VAE) and folder.model.config.bar_id == BAR
    assert meta["metrics"]["test_token_accuracy"] > 0
    # aurl generate draws latents from the prior and decodes K bars
    from aurl.cli import main

    out = tmp_path / "out"
    model = ["--model", str(tmp_path / "vae")]
    assert main(["generate", *model, "--bars", "2", "--num", "2", "--seed", "1", "--out",
                 str(out)]) == 0  # fmt: skip
    assert len(list(out.glob("*.mid"))) == 2
    # longer pieces: K bars at a time, each segment's latents from the one before, joined
    from aurl.api import load

    pieces = load(tmp_path / "vae").generate(bars=5, num=2, seed=3).pieces
    for piece in pieces:  # three segments (2 + 2 + 1 bars), each of one bar at least
        assert 3 <= piece.bars <= 5 and TK.grammar.validate(piece.ids) is None
    a, b = sorted(small_corpus.glob("*.mid"))[:2]
    assert main(["generate", *model, "--prompt", str(a), "--out", str(out)]) == 2  # no prompts
    assert main(["interpolate", str(a), str(b), *model, "--steps", "3", "--out", str(out)]) == 0
    assert len(list(out.glob(f"{a.stem}-to-{b.stem}-*.mid"))) == 3
    assert main(["vary", str(a), *model, "--num", "2", "--sample", "--out", str(out)]) == 0
    assert len(list(out.glob(f"{a.stem}-var-*.mid"))) == 2
    assert main(["vary", str(a), "--model", str(SHIPPED_MODEL), "--out", str(out)]) == 2
    assert set(meta["attributes"]) <= {"density", "pitch", "polyphony", "activity"}
    name = next(iter(meta["attributes"]))
    assert main(["vary", str(a), *model, "--attribute", f"{name}=+1.5", "--num", "3", "--out",
                 str(out)]) == 0  # fmt: skip
    assert len(list(out.glob(f"{a.stem}-{name}-*.mid"))) == 3
    assert main(["vary", str(a), *model, "--attribute", "loudness=1", "--out", str(out)]) == 2
    assert main(["vary", str(a), *model, "--attribute", "density", "--out", str(out)]) == 2
    # aurl evaluate gives a latent model its own report
    assert main(["evaluate", *model, "--num", "16", "--out", str(tmp_path / "report"),
                 "--quiet"]) == 0  # fmt: skip
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {"diagnostics", "reconstruction", "interpolation", "attributes", "prior"} <= set(report)
    assert 0 <= report["prior"]["mean_oa"] <= 1 and report["prior"]["judge_nll"] > 0
    assert 0 <= report["reconstruction"]["note_f1"] <= 1
    assert "note F1" in (tmp_path / "report" / "report.md").read_text()


def test_segments_hold_k_bars_cut_at_bar_lines(small_corpus):
    from aurl.data.prepare import prepare
    from aurl.data.shards import Shard
    from aurl.data.sources import resolve_source
    from aurl.data.windows import SegmentWindows, WindowDataset

    shard = Shard(prepare(resolve_source(str(small_corpus), 2, False), TK, progress=False)
                  .split("train"))  # fmt: skip
    windows = WindowDataset(shard, TK.vocab, 256, seed=4, transpose=3)
    segments = SegmentWindows(windows, bars=2)
    for i in range(50):
        seg = segments.segment(i)
        assert seg[0] in (BOS, BAR) and (seg == BAR).sum() <= 2
        whole = windows.window(i)
        assert (whole[: len(seg)] == seg).all()  # a prefix of the window, cut before a Bar
        assert len(seg) == len(whole) or whole[len(seg)] == BAR
        x, y = segments[i]
        assert x.shape == (256,) and (x[len(seg) :] == PAD).all()


@pytest.mark.parametrize("condition", ["prefix", "layers"])
def test_the_sampler_decodes_latents_with_and_without_the_cache(condition):
    from aurl.generate.sampler import SamplingConfig, sample
    from aurl.models.vae import LatentDecoder

    m = vae(condition=condition)
    g = torch.Generator().manual_seed(3)
    zg, zb = torch.randn(3, 8, generator=g), torch.randn(3, 2, 4, generator=g)
    decoder = LatentDecoder(m, zg, zb)
    prompt = torch.full((3, 1), BOS)
    runs = [sample(decoder, TK.vocab, prompt, 2, 120, SamplingConfig(greedy=True, use_cache=c))
            for c in (True, False)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])
    for row in runs[0]:
        ids = row[row != PAD].numpy()
        assert TK.grammar.validate(ids) is None  # the grammar mask holds for latent models
    assert not torch.equal(runs[0][0], runs[0][1])  # different latents, different music


@pytest.mark.parametrize("condition", ["prefix", "tokens"])
def test_latent_rows_that_end_early_leave_the_cache_and_the_rest_go_on_as_alone(condition):
    from aurl.generate.engine import Engine, SamplingConfig, run
    from aurl.models.vae import LatentDecoder

    m = vae(condition=condition)
    g = torch.Generator().manual_seed(5)
    zg, zb = torch.randn(3, 8, generator=g), torch.randn(3, 2, 4, generator=g)
    budgets = [12, 30, 100]
    engine = Engine(LatentDecoder(m, zg, zb), TK.vocab, SamplingConfig(greedy=True))
    engine.add([torch.tensor([BOS])] * 3, 2, budgets)
    run(engine)
    assert engine.cache.batch == 1  # the two short rows were dropped from the cache
    for r, budget in enumerate(budgets):
        alone = Engine(LatentDecoder(m, zg[r : r + 1], zb[r : r + 1]), TK.vocab,
                       SamplingConfig(greedy=True))  # fmt: skip
        alone.add([torch.tensor([BOS])], 2, budget)
        run(alone)
        assert torch.equal(engine.row(r), alone.row(0))


def test_slerp_and_lerp_keep_their_ends_and_slerp_keeps_the_norm():
    from aurl.generate.latents import interpolate, lerp, slerp, vary

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    t = torch.linspace(0, 1, 5)
    for how in (lerp, slerp):
        path = how(a, b, t)
        assert path.shape == (5, 1, 16)
        assert torch.allclose(path[0], a, atol=1e-5) and torch.allclose(path[-1], b, atol=1e-5)
    b_same_norm = b / b.norm() * a.norm()
    norms = slerp(a, b_same_norm, t).norm(dim=-1)
    assert torch.allclose(norms, a.norm().expand_as(norms), atol=1e-4)
    assert torch.allclose(slerp(a, 2 * a, t)[2], lerp(a, 2 * a, t)[2])  # parallel: a line
    bars = (torch.randn(1, 2, 4, generator=g), torch.randn(1, 2, 4, generator=g))
    zg, zb = interpolate((a, bars[0]), (b, bars[1]), 5)
    assert zg.shape == (5, 16) and zb.shape == (5, 2, 4)
    with pytest.raises(ValueError, match="at least 2 steps"):
        interpolate((a, bars[0]), (b, bars[1]), 1)
    near = vary((a, bars[0]), 3, 0.0, torch.Generator().manual_seed(1))
    assert torch.equal(near[0], a.expand(3, -1))  # amount 0: the latent itself
    one = vary((a, bars[0]), 3, 0.5, torch.Generator().manual_seed(1))
    two = vary((a, bars[0]), 3, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(one[0], two[0]) and not torch.equal(one[0][0], one[0][1])


def test_interpolation_ends_are_the_ends_reconstructions(tmp_path, bach_source):
    from aurl.api import Generator
    from aurl.models import ModelFolder

    m = vae()
    gen = Generator(ModelFolder(m, TK, {}, tmp_path), torch.device("cpu"))
    a, b = bach_source.files[0], bach_source.files[1]
    steps = gen.interpolate(a, b, 4).pieces
    ends = gen.decode_latents(tuple(torch.cat(z) for z in zip(gen.segment_latents(a),
                                                                  gen.segment_latents(b),
                                                                  strict=True))).pieces  # fmt: skip
    assert len(steps) == 4
    assert np.array_equal(steps[0].ids, ends[0].ids) and np.array_equal(steps[-1].ids, ends[1].ids)
    varied = gen.vary(a, 3, 0.0).pieces
    assert all(np.array_equal(v.ids, ends[0].ids) for v in varied)


def test_segment_attributes_by_hand_and_vectors_point_the_right_way():
    from aurl.generate.attributes import attribute_vectors, move, segment_attributes

    v = TK.vocab

    def tok(kind, value):
        return v.token(kind, value)

    ids = [BOS, BAR, tok(TokenType.POSITION, 0), tok(TokenType.PITCH, 60),
           tok(TokenType.PITCH, 64), BAR, tok(TokenType.POSITION, 0), tok(TokenType.PITCH, 62),
           tok(TokenType.POSITION, 6), tok(TokenType.PITCH, 70), PAD]  # fmt: skip
    got = segment_attributes(np.array(ids), v)
    assert got == {"density": 2.0, "pitch": 64.0, "polyphony": 4 / 3, "activity": 1.5}
    g = torch.Generator().manual_seed(0)
    zg, zb = torch.randn(40, 8, generator=g), torch.randn(40, 2, 4, generator=g)
    values = [{"density": float(zg[i, 0]), "pitch": 60.0 + i % 2, "polyphony": 1.0,
               "activity": float(-zb[i, 1, 3])} for i in range(40)]  # fmt: skip
    vectors = attribute_vectors(values, (zg, zb))
    assert "polyphony" not in vectors  # no spread, no direction
    d = torch.tensor(vectors["density"]["global"])
    assert d.argmax() == 0 and d[0] > 1.0
    a = torch.tensor(vectors["activity"]["bar"])
    assert a[1, 3] == a.min() and a[1, 3] < -1.0
    moved = move((zg[:1], zb[:1]), vectors["density"], 2.0)
    assert torch.allclose(moved[0], zg[:1] + 2 * d)


def test_note_f1_and_spearman():
    from aurl.evaluate.latent_report import note_f1, spearman

    v = TK.vocab

    def note(pos, pitch):
        return [v.token(TokenType.POSITION, pos), v.token(TokenType.PITCH, pitch),
                v.token(TokenType.VELOCITY, 20), v.token(TokenType.DURATION, 6)]  # fmt: skip

    a = np.array([BOS, BAR, *note(0, 60), *note(6, 62)])
    b = np.array([BOS, BAR, *note(0, 60), *note(6, 64)])
    assert note_f1(a, a, TK) == 1.0 and note_f1(a, b, TK) == 0.5
    assert spearman(np.arange(5), np.array([1, 3, 4, 8, 9])) == pytest.approx(1.0)
    assert spearman(np.arange(4), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    assert math.isnan(spearman(np.arange(3), np.ones(3)))


def test_the_judge_prefers_a_chorale_to_noise_and_cuts_to_its_context(bach_source):
    from aurl.evaluate.latent_samples import judge_nll
    from aurl.midi import read_midi

    judge = load_model(CHORALE_MODEL)
    chorale = TK.encode(read_midi(bach_source.files[0]))
    noise = np.random.default_rng(0).integers(BAR + 1, TK.vocab_size, 300)
    long = np.tile(chorale, 8)  # longer than the judge's context: cut, not an error
    nll = judge_nll(judge, [chorale[:300], noise, long, chorale[:1]])
    assert nll[0] < 2.0 < nll[1] and np.isfinite(nll[2]) and np.isnan(nll[3])


def test_the_latent_commands_use_the_shipped_vae(tmp_path, bach_source, monkeypatch):
    from aurl.cli import main
    from aurl.paths import SHIPPED_VAE, resolve_model_path

    assert resolve_model_path("vae-small") == SHIPPED_VAE
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae-small").mkdir()  # a folder of that name here wins over the shipped one
    assert resolve_model_path("vae-small") == Path("vae-small")
    a, b = bach_source.files[:2]
    out = tmp_path / "out"
    assert main(["interpolate", str(a), str(b), "--steps", "3", "--out", str(out)]) == 0
    assert len(list(out.glob(f"{a.stem}-to-{b.stem}-*.mid"))) == 3
    assert main(["vary", str(a), "--num", "2", "--attribute", "density=1", "--out", str(out)]) == 0
    assert len(list(out.glob(f"{a.stem}-density-*.mid"))) == 2
    assert main(["generate", "--model", str(SHIPPED_VAE), "--bars", "6", "--seed", "0",
                 "--out", str(out)]) == 0  # fmt: skip
    assert len(list(out.glob("aurl-0-*.mid"))) == 1


def test_aurl_train_starts_a_vae_from_a_language_model(small_corpus, tmp_path):
    """``aurl train`` of a VAE config with ``--init`` a language model keeps the config's
    VAE and starts its decoder from the LM (one step at a negligible learning rate leaves it
    so)."""
    from aurl.cli import main

    lm = debug_model(seed=5, max_seq_len=128)
    save_model(lm, TK, tmp_path / "lm")
    root = Path(__file__).parents[1] / "configs"
    assert main(["train", "--config", str(root / "vae-tiny.yaml"), "--init", str(tmp_path / "lm"),
                 f"data.source={small_corpus}", "train.max_steps=1", "train.eval_every=1",
                 "train.lr=1e-12", "train.min_lr=1e-12", "train.warmup_steps=0",
                 "train.tensorboard=false", "--runs-dir", str(tmp_path), "--quiet"]) == 0  # fmt: skip
    vae_folder = load_model(tmp_path / "vae-tiny" / "model")
    assert isinstance(vae_folder.model, VAE)
    for a, b in zip(vae_folder.model.decoder.parameters(), lm.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-8)


def test_attribute_movement_ignores_the_segments_own_levels():
    from aurl.evaluate.latent_report import movement

    amounts = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    levels = np.array([0.0, 10.0, -7.0])  # three segments far apart, which is no movement
    table = {"moved": 0.5 * amounts[:, None] + levels, "still": np.tile(levels, (5, 1)),
             "back": -0.1 * amounts[:, None] + levels}  # fmt: skip
    slope = movement(table, amounts)
    assert slope["moved"] == pytest.approx(0.5)
    assert slope["still"] == pytest.approx(0.0)
    assert slope["back"] == pytest.approx(-0.1)


def test_pitch_vector_holds_the_other_attributes_fixed():
    from aurl.generate.attributes import attribute_vectors

    g = torch.Generator().manual_seed(1)
    n = 400
    density, noise = torch.randn(n, generator=g), torch.randn(n, generator=g)
    pitch = 0.8 * density + 0.6 * noise  # higher segments are denser, as in real music
    zg = torch.randn(n, 6, generator=g) * 0.01
    zg[:, 0], zg[:, 1] = density, pitch  # one latent codes density, another pitch
    zb = torch.randn(n, 2, 3, generator=g) * 0.01
    values = [{"density": float(density[i]), "pitch": float(pitch[i]),
               "polyphony": float(i % 3), "activity": float(noise[i] * 0 + i % 5)}
              for i in range(n)]  # fmt: skip
    vectors = attribute_vectors(values, (zg, zb))
    p, d = torch.tensor(vectors["pitch"]["global"]), torch.tensor(vectors["density"]["global"])
    span = vectors["pitch"]["high"] - vectors["pitch"]["low"]
    assert p[1] == pytest.approx(span, rel=0.05)  # the whole quarter difference of pitch
    assert abs(float(p[0])) < 0.05 * span  # and nothing of density's code
    assert d[1] > 0.5 * d[0]  # density's vector is the plain quarter difference: pitch moves
