"""The evaluation pipeline: gather two sets of pieces, measure them, return one report dict.

``evaluate_model`` scores a model (likelihood on a test split against a Kneser–Ney
baseline, grammar validity of unmasked samples) and compares ``num`` samples with the test
split, of the model's training data or of any corpus; ``evaluate_files`` compares any two folders of MIDI files. Both return the report as a
plain dict (see :mod:`aurl.evaluate.report` for the files written). Everything but the
``timing`` section is a pure function of the inputs and the seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aurl.evaluate.compare import compare_sets, summarize
from aurl.evaluate.features import FEATURES, is_scalar, set_features
from aurl.evaluate.memorization import diversity, memorization
from aurl.evaluate.notes import Notes, crop_bars, ids_to_notes, read_folder_ids

FORMAT = "aurl-evaluation/1"
MAX_NGRAM_ORDER = 6
VALIDITY_SEED = 7919  # validity samples use seed + this, apart from the compared samples


@dataclass(frozen=True)
class EvalOptions:
    """What to generate and how to judge it.

    Attributes:
        num: samples to generate and compare with the test split.
        bars: bars per sample; the test pieces are cut to as many bars.
        seed: seed of every random choice (samples, validity samples).
        temperature, top_p: sampling of the compared samples (``aurl generate``'s defaults).
        validity_num: samples drawn without the grammar mask to measure validity.
        batch: sequences generated at once (small batches keep one runaway sample from
            holding many others).
        ngram_order: order of the Kneser–Ney baseline (lowered if the ids do not fit).
        window_bars: window length of the memorization check.
        threshold: window share at or above which a sample is flagged as copied.
    """

    num: int = 100
    bars: int = 8
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.95
    validity_num: int = 16
    batch: int = 50
    ngram_order: int = MAX_NGRAM_ORDER
    window_bars: int = 4
    threshold: float = 0.5


@dataclass
class PieceSet:
    """One side of a comparison: named pieces as notes."""

    label: str
    names: list[str]
    notes: list[Notes]
    skipped: list[dict] = field(default_factory=list)


@dataclass
class Evaluation:
    """What an evaluation produced: the report dict, the generated samples (model mode only)
    and both sets' notes (for the figures)."""

    report: dict
    notes: dict[str, list[Notes]]
    pieces: list | None = None


class _Clock:
    def __init__(self, log: Callable[[str], None]):
        self.log, self.times, self.t0 = log, {}, time.perf_counter()

    def stage(self, name: str, started: float) -> None:
        self.times[name] = round(time.perf_counter() - started, 3)

    def total(self) -> dict:
        return self.times | {"total": round(time.perf_counter() - self.t0, 3)}


def _quiet(_: str) -> None:
    return None


def compare_piece_sets(
    generated: PieceSet,
    reference: PieceSet,
    training: PieceSet | None,
    options: EvalOptions,
    clock: _Clock,
) -> dict:
    """Features, set comparison, memorization and diversity of two piece sets."""
    for s in (generated, reference):
        if not s.notes:
            raise ValueError(f"{s.label}: no pieces to evaluate")
    t = time.perf_counter()
    gen_f, ref_f = set_features(generated.notes), set_features(reference.notes)
    comparison = compare_sets(gen_f, ref_f)
    clock.stage("features_and_comparison", t)
    features = {
        name: {
            "source": FEATURES[name][1],
            "description": FEATURES[name][2],
            "generated": summarize(gen_f[name]),
            "reference": summarize(ref_f[name]),
            **comparison[name],
        }
        for name in FEATURES
    }
    t = time.perf_counter()
    against = training or reference
    copied = memorization(generated.notes, against.notes, options.window_bars, options.threshold)
    baseline = (
        memorization(reference.notes, training.notes, options.window_bars, options.threshold)[
            "summary"
        ]
        if training
        else None
    )
    clock.stage("memorization", t)
    t = time.perf_counter()
    div = {
        "generated": diversity(generated.notes, options.window_bars),
        "reference": diversity(reference.notes, options.window_bars),
    }
    ratios = [
        f["intra_generated_mean"] / f["intra_reference_mean"]
        for f in features.values()
        if f["intra_reference_mean"]
    ]
    div["feature_spread_ratio"] = _mean(ratios)
    clock.stage("diversity", t)
    oas = [f["oa"] for f in features.values() if f["oa"] is not None]
    return {
        "sets": {"generated": _set_info(generated), "reference": _set_info(reference)},
        "features": features,
        "overall": {
            "mean_oa": _mean(oas),
            "mean_kl": _mean([f["kl"] for f in features.values() if f["kl"] is not None]),
        },
        "memorization": {"against": against.label, **copied, "reference_baseline": baseline},
        "diversity": div,
        "pieces": {
            "generated": _piece_rows(generated, gen_f, copied),
            "reference": _piece_rows(reference, ref_f, None),
        },
    }


def evaluate_files(
    files: str | Path,
    reference: str | Path,
    options: EvalOptions | None = None,
    log: Callable[[str], None] = _quiet,
) -> Evaluation:
    """Compare the MIDI files under ``files`` with those under ``reference``.

    Files are quantized with the default tokenizer's grid and compared whole (``bars`` is
    not used). Memorization is measured against the reference set.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: a folder holds no readable MIDI files.
    """
    from aurl.tokens import Tokenizer

    options = options or EvalOptions()
    clock, tokenizer = _Clock(log), Tokenizer()
    t = time.perf_counter()
    sets = []
    for label, folder in (("files", files), ("reference", reference)):
        names, ids, skipped = read_folder_ids(folder, tokenizer)
        if not ids:
            raise ValueError(f"{folder}: none of the MIDI files could be read")
        sets.append(
            PieceSet(label, names, [ids_to_notes(i, tokenizer.vocab) for i in ids], skipped)
        )
        log(
            f"{label}: {len(ids)} files from {folder}"
            + (f" ({len(skipped)} skipped)" if skipped else "")
        )
    clock.stage("read", t)
    body = compare_piece_sets(sets[0], sets[1], None, options, clock)
    head = {
        "format": FORMAT,
        "mode": "files",
        "files": str(files),
        "reference": str(reference),
        "options": asdict(options) | {"bars": None, "num": None},
    }
    notes = {"generated": sets[0].notes, "reference": sets[1].notes}
    return Evaluation(head | body | {"timing": clock.total()}, notes)


def evaluate_model(
    model: str | Path | None = None,
    options: EvalOptions | None = None,
    device: str = "auto",
    log: Callable[[str], None] = _quiet,
    progress: bool = False,
    data: str | None = None,
) -> Evaluation:
    """Evaluate a model folder (the shipped model by default) on a test split.

    Args:
        model: a model folder or a run folder; None: the shipped model.
        options: what to generate and how to judge it.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        log: takes each progress line.
        progress: show progress bars while a dataset is prepared.
        data: a folder of MIDI files or a corpus name to evaluate on, prepared with the
            model's tokenizer; None: the data the model was trained on. Likelihood, the
            n-gram baseline, the samples' token budget and the comparisons then all use
            this data's splits.

    Raises:
        ModelLoadError: the model folder is missing or broken.
        SourceError: ``data`` is no folder or corpus, or holds no MIDI files.
        ValueError: the model does not say which data it was trained on (without ``data``),
            or the test split is empty.
    """
    from aurl.data.shards import Shard
    from aurl.evaluate.datasets import source_dataset, trained_dataset
    from aurl.evaluate.likelihood import likelihood_report
    from aurl.evaluate.samples import token_budget
    from aurl.models.calibration import use_fastest_attention

    options = options or EvalOptions()
    clock = _Clock(log)
    t = time.perf_counter()
    folder, dev = _load(model, device)
    trained_on = folder.meta.get("data_source")
    if data is None:
        dataset, evaluated_on = trained_dataset(folder, progress), trained_on
    else:
        dataset, evaluated_on = source_dataset(data, folder.tokenizer, progress), data
    splits = {s: Shard(dataset.split(s)) for s in ("train", "test")}
    clock.stage("load", t)
    if splits["test"].num_pieces == 0:
        raise ValueError(
            f"{evaluated_on}: the test split of dataset {dataset.fingerprint} is empty"
        )
    test_ids = [splits["test"].piece(i) for i in range(splits["test"].num_pieces)]
    train_ids = [splits["train"].piece(i) for i in range(splits["train"].num_pieces)]
    log(
        f"data: {evaluated_on}, dataset {dataset.fingerprint}, {len(train_ids)} train and "
        f"{len(test_ids)} test pieces"
    )

    likelihood, seconds = likelihood_report(folder, splits["test"], train_ids, test_ids,
                                            options.ngram_order, dev)  # fmt: skip
    clock.times |= {name: round(s, 3) for name, s in seconds.items()}
    m, g, u = (likelihood[k]["nll_per_token"] for k in ("model", "ngram", "uniform"))
    order = likelihood["ngram"]["order"]
    log(f"test NLL per token: model {m:.4f}, {order}-gram {g:.4f}, uniform {u:.4f}")
    use_fastest_attention(folder.model, dev)  # for sampling only
    budget = token_budget(splits["train"], options.bars)
    validity = _validity(folder, dev, options, budget, clock, log)
    t = time.perf_counter()
    pieces = _generate(folder, dev, options, budget, log)
    clock.stage("generate", t)
    vocab = folder.tokenizer.vocab
    generated = PieceSet(
        "samples",
        [f"sample-{i + 1:03d}" for i in range(len(pieces))],
        [ids_to_notes(p.ids, vocab) for p in pieces],
    )
    reference = PieceSet(
        "test split",
        list(dataset.manifest["splits"]["test"]["identities"]),
        [crop_bars(ids_to_notes(i, vocab), options.bars) for i in test_ids],
    )
    train_label = "train split" if data is None else f"train split of {data}"
    training = PieceSet(train_label, [], [ids_to_notes(i, vocab) for i in train_ids])
    body = compare_piece_sets(generated, reference, training, options, clock)
    for row, piece in zip(body["pieces"]["generated"], pieces, strict=True):
        row |= {"tokens": len(piece.ids), "bars": piece.bars, "truncated": piece.truncated}
    head = {
        "format": FORMAT,
        "mode": "model",
        "model": {
            "path": str(folder.path),
            "parameters": sum(p.numel() for p in folder.model.parameters()),
            "data_source": trained_on,
            "data_fingerprint": folder.meta.get("data_fingerprint"),
            "evaluated_on": evaluated_on,
            "dataset": dataset.fingerprint,
            "dataset_matches_training": dataset.fingerprint == folder.meta.get("data_fingerprint"),
        },
        "options": asdict(options),
        "likelihood": likelihood,
        "validity": validity,
        "generation": {
            "samples": len(pieces),
            "token_budget": {"soft": budget.soft, "hard": budget.hard},
            "truncated": sum(p.truncated for p in pieces),
            "tokens": int(sum(len(p.ids) - 1 for p in pieces)),
        },
    }
    notes = {"generated": generated.notes, "reference": reference.notes}
    return Evaluation(head | body | {"timing": clock.total()}, notes, pieces)


def _load(model: str | Path | None, device: str):
    """The model folder, loaded on the device that ``device`` names, and that device.

    Attention computes in float32 until the caller asks for the fast precision.

    Raises:
        ModelLoadError: the folder is missing or not a model.
    """
    from aurl.device import pick_device
    from aurl.models import load_model
    from aurl.models.folder import ModelLoadError
    from aurl.paths import resolve_model_path

    path = resolve_model_path(model)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model folder")
    dev = pick_device(device)
    return load_model(path, dev), dev


def _validity(folder, device, options: EvalOptions, budget, clock: _Clock, log) -> dict:
    from aurl.evaluate.samples import draw, validity
    from aurl.generate.sampler import SamplingConfig

    t = time.perf_counter()
    sampling = SamplingConfig(
        temperature=options.temperature, top_p=options.top_p, grammar=False, fill_bars=False
    )
    drawn, _, _ = draw(
        folder,
        device,
        options.validity_num,
        options.bars,
        sampling,
        options.seed + VALIDITY_SEED,
        budget,
        options.batch,
    )
    result = validity(folder.tokenizer, drawn)
    clock.stage("validity", t)
    if drawn:
        log(f"grammar validity without the mask: {result['valid']}/{result['samples']}")
    return result


def _generate(folder, device, options: EvalOptions, budget, log) -> list:
    from aurl.evaluate.samples import draw
    from aurl.generate.sampler import SamplingConfig

    sampling = SamplingConfig(temperature=options.temperature, top_p=options.top_p)
    pieces, tokens, wall = draw(
        folder, device, options.num, options.bars, sampling, options.seed, budget, options.batch
    )
    log(
        f"generated {len(pieces)} samples: {tokens} tokens at {tokens / max(wall, 1e-9):.0f} "
        f"tokens/s ({sum(p.truncated for p in pieces)} cut at {budget.hard} tokens)"
    )
    return pieces


def _set_info(s: PieceSet) -> dict:
    return {
        "label": s.label,
        "pieces": len(s.notes),
        "notes": int(sum(len(n) for n in s.notes)),
        "bars": int(sum(n.num_bars for n in s.notes)),
        "skipped": s.skipped,
    }


def _piece_rows(s: PieceSet, feats: dict[str, np.ndarray], copied: dict | None) -> list[dict]:
    """One row per piece: name, size, scalar features (and memorization for samples)."""
    rows = []
    for i, (name, notes) in enumerate(zip(s.names or [""] * len(s.notes), s.notes, strict=True)):
        row = {"name": name, "notes": len(notes), "bars": notes.num_bars}
        row |= {k: _number(v[i]) for k, v in feats.items() if is_scalar(v)}
        if copied is not None:
            row |= {
                "longest_copied_notes": copied["longest_notes"][i],
                "longest_copied_bars": copied["longest_bars"][i],
                "copied_window_share": copied["window_share"][i],
            }
        rows.append(row)
    return rows


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None
