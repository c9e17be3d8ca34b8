"""Tests for aurl.midi: reading never crashes or hangs, errors name file and reason."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import symusic

from aurl.midi import MidiError, read_midi, write_midi
from aurl.midi.read import read_midi_bytes
from conftest import EDGE_CASES

PARSERS = ("symusic", "pretty_midi", "mido", "miditoolkit", "muspy")
WALK_TIMEOUT_S = 60

_WORKER = """
import json, sys
from pathlib import Path
from aurl.midi import MidiError, read_midi
for name in sys.argv[1:]:
    print(json.dumps({"start": name}), flush=True)
    try:
        result = {"file": name, "notes": read_midi(name).note_num()}
    except MidiError as err:
        result = {"file": name, "error": str(err), "reason": err.reason}
    print(json.dumps(result), flush=True)
"""


def _edge_case_files() -> list[Path]:
    if not EDGE_CASES.is_dir():
        return []
    skip = {".tsv", ".md"}
    return sorted(p for p in EDGE_CASES.rglob("*") if p.is_file() and p.suffix not in skip)


def _rel(path: Path) -> str:
    return path.relative_to(EDGE_CASES).as_posix()


def _first_real_midi() -> Path:
    path = EDGE_CASES / "craffel__pretty-midi" / "example.mid"
    if not path.is_file():
        pytest.skip(f"edge-case MIDI files not found at {EDGE_CASES}")
    return path


@pytest.fixture(scope="module")
def walk_results() -> dict[str, dict]:
    """Read every edge-case file in one child process, so a crash or hang cannot stop pytest."""
    files = _edge_case_files()
    if not files:
        pytest.skip(f"edge-case MIDI files not found at {EDGE_CASES}")
    cmd = [sys.executable, "-c", _WORKER, *map(str, files)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WALK_TIMEOUT_S)
        stdout, note = proc.stdout, f"child exited with {proc.returncode}: {proc.stderr[-500:]}"
    except subprocess.TimeoutExpired as err:
        stdout, note = (err.stdout or b"").decode(), f"child hung past {WALK_TIMEOUT_S}s"
    results: dict[str, dict] = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        key = _rel(Path(record.get("file") or record["start"]))
        results[key] = record if "file" in record else {"crash": note}
    return results


@pytest.mark.parametrize("path", _edge_case_files(), ids=_rel)
def test_edge_case_reads_or_raises_midi_error(path: Path, walk_results: dict[str, dict]) -> None:
    result = walk_results.get(_rel(path), {"crash": "never reached (earlier crash or hang)"})
    assert "crash" not in result, f"{_rel(path)}: {result.get('crash')}"
    if "notes" in result:
        assert result["notes"] > 0
    else:
        assert path.name in result["error"]
        assert "\n" not in result["error"]
        assert result["reason"]


def _read_by_all_others() -> list[tuple[str, int]]:
    table = EDGE_CASES / "parsers.tsv"
    if not table.is_file():
        return []
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    keep = []
    for row in rows:
        counts = [row[p].split()[1] for p in PARSERS if row[p].startswith("OK ")]
        if len(counts) == len(PARSERS) and all(int(c) > 0 for c in counts):
            keep.append((row["file"], int(row["symusic"].split()[1])))
    return keep


@pytest.mark.parametrize(("rel", "notes"), _read_by_all_others(), ids=lambda v: str(v))
def test_files_every_parser_reads_also_read_here(
    rel: str, notes: int, walk_results: dict[str, dict]
) -> None:
    assert walk_results[rel].get("notes") == notes, walk_results[rel]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mid"
    with pytest.raises(MidiError, match="file not found") as info:
        read_midi(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: file not found"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mid"
    path.write_bytes(b"")
    with pytest.raises(MidiError, match=r"empty file \(0 bytes\)"):
        read_midi(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.mid"
    path.write_text("C D E F G\n")
    with pytest.raises(MidiError, match="not a MIDI file"):
        read_midi(path)


def test_folder(tmp_path: Path) -> None:
    with pytest.raises(MidiError, match="folder"):
        read_midi(tmp_path)


def test_truncated_file(tmp_path: Path) -> None:
    data = _first_real_midi().read_bytes()
    for cut in (2, 10, 30, len(data) // 2):
        path = tmp_path / f"cut{cut}.mid"
        path.write_bytes(data[:cut])
        with pytest.raises(MidiError, match="truncated file") as info:
            read_midi(path)
        assert path.name in str(info.value)


def test_smpte_division(tmp_path: Path) -> None:
    data = bytearray(_first_real_midi().read_bytes())
    data[12:14] = bytes([0xE7, 40])  # -25 frames per second, 40 ticks per frame
    path = tmp_path / "smpte.mid"
    path.write_bytes(bytes(data))
    with pytest.raises(MidiError, match="SMPTE time division is not supported"):
        read_midi(path)


def test_no_notes_bytes() -> None:
    data = b"MThd\0\0\0\x06\0\x01\0\x01\0\x60MTrk\0\0\0\x04\0\xff\x2f\0"
    with pytest.raises(MidiError, match="no notes") as info:
        read_midi_bytes(data, "silent.mid")
    assert str(info.value) == "silent.mid: no notes"


def test_clip_rescue_reads_data_bytes_above_127() -> None:
    path = (
        EDGE_CASES / "Natooz__MidiTok" / "tests" / "MIDIs_corrupted" / "ValueError_Control168.mid"
    )
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with pytest.raises(RuntimeError):
        symusic.Score.from_file(path)  # symusic alone rejects it
    score = read_midi(path)
    assert isinstance(score, symusic.Score)
    assert score.note_num() > 0


def _notes(score: symusic.Score) -> list[tuple[int, int, int, int, int]]:
    return sorted(
        (track.program, n.time, n.duration, n.pitch, n.velocity)
        for track in score.tracks
        for n in track.notes
    )


def test_write_read_round_trip(tmp_path: Path) -> None:
    score = read_midi(_first_real_midi())
    path = write_midi(score, tmp_path / "a" / "b" / "out.mid")
    assert path == tmp_path / "a" / "b" / "out.mid"
    again = read_midi(path)
    assert again.ticks_per_quarter == score.ticks_per_quarter
    assert _notes(again) == _notes(score)


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    score = read_midi(_first_real_midi())
    path = tmp_path / "out.mid"
    path.write_bytes(b"old")
    write_midi(score, path)
    write_midi(score, path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mid"]
    assert read_midi(path).note_num() == score.note_num()


def test_midi_error_is_picklable() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(MidiError("x.mid", "no notes")))
    assert (err.path, err.reason, str(err)) == ("x.mid", "no notes", "x.mid: no notes")
