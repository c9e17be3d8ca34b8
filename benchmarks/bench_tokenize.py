"""Tokenization speed on the Bach chorales: our encoder against MidiTok 3.1.0 REMI.

Both tokenizers encode the same symusic Scores, already in memory, so file reading is
timed by neither. symusic's own parse time of the same files is the reference ceiling
for the whole MIDI -> tokens pipeline. Speeds are notes/s, best of ``--repeats``.

    .venv/bin/python benchmarks/bench_tokenize.py [--limit N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import miditok
import symusic

from aurl.data.sources import bach_source
from aurl.midi import read_midi
from aurl.midi.arrays import note_table
from aurl.tokens import Tokenizer
from aurl.tokens.encode import encode_many
from common import machine_info, machine_markdown, timed, write_results

PACKAGES = ("aurl", "torch", "numpy", "symusic", "miditok")
BATCH = 16  # Scores per encode_many call, as prepare's workers batch them


def miditok_remi() -> miditok.REMI:
    """REMI configured like our vocabulary: 12 steps per quarter up to 8 quarters,
    programs in one stream, tempos (32 log bins, 30-240 BPM), time signatures, 32 velocities."""
    config = miditok.TokenizerConfig(
        pitch_range=(0, 127),
        beat_res={(0, 8): 12},
        num_velocities=32,
        use_programs=True,
        one_token_stream_for_programs=True,
        use_tempos=True,
        num_tempos=32,
        tempo_range=(30, 240),
        log_tempos=True,
        use_time_signatures=True,
        time_signature_range={2: [2, 3, 4], 4: [2, 3, 4, 5, 6, 7], 8: [3, 5, 6, 7, 9, 12]},
    )
    return miditok.REMI(config)


def best_rate(fn, scores_per_repeat: list[list[symusic.Score]], count: int) -> dict:
    """Run ``fn`` over each repeat's list of scores; best time and ``count`` per second."""
    times = []
    for scores in scores_per_repeat:
        t0 = time.perf_counter()
        for score in scores:
            fn(score)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"seconds": times, "best_s": best, "per_s": count / best}


def run(files: list[Path], repeats: int) -> dict:
    ours, remi = Tokenizer(), miditok_remi()
    scores = [read_midi(f) for f in files]
    notes = sum(s.note_num() for s in scores)
    # MidiTok preprocesses a Score in place, so every repeat gets its own fresh copies.
    copies = [[s.copy() for s in scores] for _ in range(repeats)]
    for s in scores[:5]:  # warm up both
        ours.encode(s.copy())
        remi.encode(s.copy())

    results = {"files": len(files), "notes": notes}
    data = [f.read_bytes() for f in files]
    parse_file = timed(lambda: [symusic.Score(f) for f in files], repeats)
    parse_bytes = timed(lambda: [symusic.Score.from_midi(d) for d in data], repeats)
    results["symusic_parse_file"] = {"seconds": parse_file, "per_s": notes / min(parse_file)}
    results["symusic_parse_bytes"] = {"seconds": parse_bytes, "per_s": notes / min(parse_bytes)}

    results["ours_encode"] = best_rate(ours.encode, copies, notes)
    batches = [[scores[i : i + BATCH] for i in range(0, len(scores), BATCH)] for _ in copies]
    results["ours_encode_many"] = best_rate(
        lambda batch: encode_many(note_table(batch), ours.vocab), batches, notes
    )
    copies = [[s.copy() for s in scores] for _ in range(repeats)]
    results["miditok_encode"] = best_rate(remi.encode, copies, notes)

    ids = [ours.encode(s) for s in scores]
    tokens = sum(len(x) for x in ids)
    dec = timed(lambda: [ours.decode(x) for x in ids], repeats)
    decoded_notes = sum(ours.decode(x).note_num() for x in ids)
    results["ours_tokens"] = tokens
    results["ours_decode"] = {
        "seconds": dec,
        "per_s": decoded_notes / min(dec),
        "tokens_per_s": tokens / min(dec),
    }
    seqs = [remi.encode(s.copy()) for s in scores]
    dec_remi = timed(lambda: [remi.decode(x) for x in seqs], repeats)
    results["miditok_tokens"] = sum(len(x) for x in seqs)
    results["miditok_decode"] = {"seconds": dec_remi, "per_s": decoded_notes / min(dec_remi)}

    results["ratio_encode_ours_over_miditok"] = (
        results["ours_encode"]["per_s"] / results["miditok_encode"]["per_s"]
    )
    results["ratio_encode_ours_over_symusic_parse"] = (
        results["ours_encode"]["per_s"] / results["symusic_parse_file"]["per_s"]
    )
    results["ratio_decode_ours_over_miditok"] = (
        results["ours_decode"]["per_s"] / results["miditok_decode"]["per_s"]
    )
    return results


def markdown(r: dict, info: dict) -> str:
    def row(name: str, key: str, note: str = "") -> str:
        return (
            f"| {name} | {r[key]['per_s']:,.0f} | {min(r[key]['seconds']) * 1000:,.1f} | {note} |"
        )

    return "\n".join(
        [
            "# Tokenization speed",
            "",
            f"{r['files']} Bach chorales, {r['notes']:,} notes; best of {r['repeats']} repeats. "
            "Encoders run on symusic Scores already in memory (no file reading).",
            "",
            "| step | notes/s | best time (ms) | notes |",
            "|---|---:|---:|---|",
            row("symusic parse (from file)", "symusic_parse_file", "ceiling for the pipeline"),
            row("symusic parse (from bytes)", "symusic_parse_bytes", "file bytes in memory"),
            row("aurl encode", "ours_encode", f"{r['ours_tokens']:,} tokens, one Score a call"),
            row(
                f"aurl encode_many, {BATCH} at a time",
                "ours_encode_many",
                "the same ids; what prepare's workers call",
            ),  # fmt: skip
            row("MidiTok 3.1.0 REMI encode", "miditok_encode", f"{r['miditok_tokens']:,} tokens"),
            row("aurl decode", "ours_decode", f"{r['ours_decode']['tokens_per_s']:,.0f} tokens/s"),
            row("MidiTok 3.1.0 REMI decode", "miditok_decode", ""),
            "",
            f"- encode, aurl / MidiTok: **{r['ratio_encode_ours_over_miditok']:.1f}×** "
            f"(target ≥ 10×); {BATCH} Scores a call: "
            f"{r['ours_encode_many']['per_s'] / r['miditok_encode']['per_s']:.1f}×",
            f"- encode, aurl / symusic parse from file: {r['ratio_encode_ours_over_symusic_parse']:.2f}",
            f"- decode, aurl / MidiTok: {r['ratio_decode_ours_over_miditok']:.2f}×",
            "",
            "MidiTok REMI config: beat_res {(0, 8): 12}, 32 velocities, programs in one "
            "stream, tempos (32 log bins, 30-240), time signatures, pitch range 0-127. "
            "MidiTok's encode includes its own preprocessing (resampling, merging); ours "
            "includes quantizing to the grid.",
            "",
            machine_markdown(info),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N files")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()

    files = bach_source(workers=2, progress=False).files
    if args.limit:
        files = files[: args.limit]
    results = run(files, args.repeats)
    results["repeats"] = args.repeats
    info = machine_info(PACKAGES)
    data = {"benchmark": "tokenize", "machine": info, "results": results}
    print(
        f"ours {results['ours_encode']['per_s']:,.0f} notes/s, "
        f"MidiTok {results['miditok_encode']['per_s']:,.0f} notes/s, "
        f"ratio {results['ratio_encode_ours_over_miditok']:.1f}x; "
        f"symusic parse {results['symusic_parse_file']['per_s']:,.0f} notes/s; "
        f"decode {results['ours_decode']['per_s']:,.0f} notes/s"
    )
    kwargs = {"out_dir": args.out} if args.out else {}
    write_results("tokenize", data, markdown(results, info), **kwargs)


if __name__ == "__main__":
    main()
