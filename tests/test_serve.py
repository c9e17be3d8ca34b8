"""The HTTP API: every route end to end on tiny trained models, continuous batching against
requests run alone, and bad input answered with a one-line 4xx."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import threading
import time

import pytest
import symusic
import torch
from fastapi.testclient import TestClient

from aurl.api import load
from aurl.generate.draws import RowSampling
from aurl.midi import read_midi_bytes
from aurl.serve.app import create_app
from aurl.serve.batcher import Batcher, Job
from aurl.serve.limits import Limits
from aurl.serve.models import Models
from aurl.serve.workers import Workers
from aurl.tokens import BOS


@pytest.fixture(scope="module")
def runs(tiny_run, feature_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    (folder / "tiny").symlink_to(tiny_run)
    (folder / "features").symlink_to(feature_run)
    return folder


@pytest.fixture(scope="module")
def client(runs):
    limits = Limits(max_upload_bytes=20_000, max_bars=8, max_num=4, max_rows=8)
    with TestClient(create_app(Models(runs, "tiny", threads=2), limits)) as c:
        yield c


def _melody(bars: int = 4, tracks: int = 1) -> str:
    score = symusic.Score(480)
    for k in range(tracks):
        track = symusic.Track(program=0, name=["Soprano", "Bass"][k])
        for beat in range(4 * bars):
            track.notes.append(symusic.Note(beat * 480, 480, 72 - 12 * k + beat % 5, 80))
        score.tracks.append(track)
    return base64.b64encode(score.dumps_midi()).decode()


def _ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_info_name_models_controls_and_limits(client):
    assert _ok(client.get("/health")) == {"status": "ok"}
    info = _ok(client.get("/info"))
    assert {"bach-small", "tiny", "features"} <= set(info["models"]) and info["default"] == "tiny"
    assert info["limits"]["max_bars"] == 8 and "tempo" in info["controls"]


def test_generate_gives_pieces_of_the_bars_asked_and_a_seed_repeats(client):
    body = {"bars": 2, "num": 2, "seed": 5, "temperature": 0.9, "with_notes": True,
            "model": "bach-small"}  # a real model closes its bars: quick  # fmt: skip
    out = _ok(client.post("/generate", json=body))
    assert out["model"] == "bach-small" and out["tokens_per_second"] > 0 and len(out["pieces"]) == 2
    for piece in out["pieces"]:
        score = read_midi_bytes(base64.b64decode(piece["midi"]))
        assert piece["notes"] == score.note_num() > 0
        assert piece["bars"] == 2 or (piece["bars"] < 2 and piece["ended_short"])
        assert len(piece["note_list"]) == piece["notes"] and piece["bar_starts"][0] == 0.0
    again = _ok(client.post("/generate", json=body))
    assert [p["midi"] for p in again["pieces"]] == [p["midi"] for p in out["pieces"]]
    other = _ok(client.post("/generate", json={**body, "seed": 6}))
    assert [p["midi"] for p in other["pieces"]] != [p["midi"] for p in out["pieces"]]


def test_a_prompt_is_continued(client):
    out = _ok(client.post("/generate", json={"bars": 1, "prompt": _melody(), "prompt_bars": 2}))
    piece = read_midi_bytes(base64.b64decode(out["pieces"][0]["midi"]))
    assert out["pieces"][0]["bars"] >= 2 and piece.note_num() >= 8  # two prompt bars kept


def test_concurrent_requests_share_steps_and_each_gets_what_it_gets_alone(runs):
    gen = load(runs / "tiny", threads=2)
    batcher = Batcher(gen.model, gen.tokenizer.vocab, max_rows=8)
    prompts = [torch.tensor([BOS]), torch.as_tensor(gen.tokenizer.encode(
        read_midi_bytes(base64.b64decode(_melody())))[:40])]  # fmt: skip

    def job(k: int) -> Job:
        return Job([prompts[k % 2]], 6, 150, [None], [RowSampling(0.8 + 0.1 * k, 0, 1.0, k)],
                   time.monotonic() + 60)  # fmt: skip

    alone, steps_alone = [], 0
    for k in range(3):
        before = batcher.steps
        alone.append(batcher.submit(job(k)).result(timeout=60)[0])
        steps_alone += batcher.steps - before
    before = batcher.steps
    futures = [batcher.submit(job(k)) for k in range(3)]
    together = [f.result(timeout=60)[0] for f in futures]
    batcher.close()
    assert all((a == b).all() for a, b in zip(alone, together, strict=True))
    assert batcher.steps - before < steps_alone  # the three shared their steps


def test_on_onnxruntime_concurrent_requests_get_what_they_get_alone(runs, tmp_path):
    """The server's default backend: the batcher drives an exported model as it drives
    PyTorch (requests joining at different steps, finished rows leaving the cache)."""
    pytest.importorskip("onnxruntime")
    from aurl.export.onnx import export_onnx
    from aurl.generate.onnx_backend import OnnxDecoder

    export_onnx(runs / "tiny" / "model", tmp_path / "onnx")
    gen = load(tmp_path / "onnx", backend="onnx", threads=1)
    assert isinstance(gen.model, OnnxDecoder)
    batcher = Batcher(gen.model, gen.tokenizer.vocab, max_rows=8)
    job = lambda k: Job([torch.tensor([BOS])], 4 + k, 40 + 30 * k, [None],  # noqa: E731
                        [RowSampling(1.0, 0, 0.95, k)], time.monotonic() + 60)  # fmt: skip
    alone = [batcher.submit(job(k)).result(timeout=60)[0] for k in range(3)]
    futures = []
    for k in range(3):  # each joins a batch already running
        futures.append(batcher.submit(job(k)))
        time.sleep(0.05)
    together = [f.result(timeout=60)[0] for f in futures]
    batcher.close()
    assert all((a == b).all() for a, b in zip(alone, together, strict=True))
    served = Models(runs, "tiny", threads=1, backend="torch").get()
    assert not isinstance(served.model, OnnxDecoder)


def test_guided_and_unguided_requests_share_steps_as_they_run_alone(runs):
    from aurl.generate.control_names import ControlRequest

    gen = load(runs / "features", threads=2)
    batcher = Batcher(gen.model, gen.tokenizer.vocab, max_rows=8)
    batch, plan = gen.start_ids(3, 1, None, ControlRequest(key="D minor", density="3"))

    def job(k: int) -> Job:
        return Job(list(batch), 3, 300, [plan], [RowSampling(1.0, 0, 0.95, 7)],
                   time.monotonic() + 60, guidance=[1.0, 3.0][k])  # fmt: skip

    alone = [batcher.submit(job(k)).result(timeout=60)[0] for k in range(2)]
    futures = [batcher.submit(job(k)) for k in range(2)]
    together = [f.result(timeout=60)[0] for f in futures]
    batcher.close()
    assert all((a == b).all() for a, b in zip(alone, together, strict=True))
    assert not (len(alone[0]) == len(alone[1]) and (alone[0] == alone[1]).all())


def test_a_cancelled_request_frees_its_rows(runs):
    gen = load(runs / "tiny", threads=2)
    batcher = Batcher(gen.model, gen.tokenizer.vocab, max_rows=4)
    long = Job([torch.tensor([BOS])] * 4, 500, 100_000, [None] * 4,
               [RowSampling(seed=s) for s in range(4)], time.monotonic() + 60)  # fmt: skip
    batcher.submit(long)
    while batcher.steps < 3:
        time.sleep(0.01)
    waiting = Job([torch.tensor([BOS])], 1, 200, [None], [RowSampling(seed=9)],
                  time.monotonic() + 60)  # fmt: skip
    batcher.submit(waiting)  # no room until the long one goes
    long.cancel()
    assert len(waiting.future.result(timeout=30)) == 1 and long.future.cancelled()
    batcher.close()


def test_a_request_past_its_time_comes_back_as_it_is(runs):
    gen = load(runs / "tiny", threads=2)
    batcher = Batcher(gen.model, gen.tokenizer.vocab)
    job = Job([torch.tensor([BOS])], 500, 100_000, [None], [RowSampling(seed=1)],
              time.monotonic() + 0.3)  # fmt: skip
    (ids,) = batcher.submit(job).result(timeout=30)
    batcher.close()
    assert job.timed_out and len(ids) > 1


def test_stream_sends_every_bar_then_done(client):
    kinds, bars = [], []
    with client.stream(
        "POST", "/generate/stream", json={"bars": 3, "seed": 2, "model": "bach-small"}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                kinds.append(line[7:])
            elif line.startswith("data: ") and kinds[-1] == "bar":
                import json

                event = json.loads(line[6:])
                read_midi_bytes(base64.b64decode(event["midi"]))
                bars.append(event["bar"])
    assert kinds == ["bar", "bar", "bar", "done"] and bars == [1, 2, 3]


def test_a_client_that_leaves_a_stream_frees_its_rows(client):
    with client.stream("POST", "/generate/stream",
                       json={"bars": 8, "num": 4, "seed": 3, "model": "bach-small"}) as response:  # fmt: skip
        for line in response.iter_lines():
            if line.startswith("event: bar"):
                break
    batcher = client.app.state.server.batchers["bach-small"]
    deadline = time.monotonic() + 20
    while batcher.live_rows and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.live_rows == 0


def test_infill_and_harmonize_keep_what_was_not_asked_for(client):
    melody = _melody(2)
    out = _ok(client.post("/harmonize", json={"midi": melody, "model": "features", "seed": 1}))
    score = read_midi_bytes(base64.b64decode(out["pieces"][0]["midi"]))
    original = read_midi_bytes(base64.b64decode(melody))
    assert len(score.tracks) > 1
    assert score.tracks[0].notes.numpy()["pitch"].tolist() == original.tracks[0].notes.numpy()[
        "pitch"].tolist()  # fmt: skip
    out = _ok(client.post("/infill", json={"midi": _melody(4, 2), "bars": "2",
                                           "model": "features"}))  # fmt: skip
    assert len(out["pieces"]) == 1


def test_analyze_gives_the_analysis(client):
    out = _ok(client.post("/analyze", json={"midi": _melody()}))
    assert {"key", "harmony", "structure", "melody"} <= set(out)


def test_analysis_workers_answer_as_the_server_does_and_a_dead_one_is_replaced(client, runs):
    melody = _melody()
    with TestClient(create_app(Models(runs, "tiny", threads=2), workers=1)) as pooled:
        out = _ok(pooled.post("/analyze", json={"midi": melody}))
        assert out == _ok(client.post("/analyze", json={"midi": melody}))
        bad = pooled.post("/analyze", json={"midi": base64.b64encode(b"MThd junk").decode()})
        assert bad.status_code == 400 and "midi" in bad.json()["error"]
    workers = Workers(1)
    workers.start()
    try:
        for pid in list(workers._pool._processes):
            os.kill(pid, signal.SIGKILL)
        status, text = asyncio.run(workers.analyze(melody, 1 << 20, 8192))
        assert status == 500 and "replaced" in text
        status, text = asyncio.run(workers.analyze(melody, 1 << 20, 8192))
        assert status == 200 and json.loads(text) == out
    finally:
        workers.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/generate", {"bars": 9}, 400, "bars: at most 8"),
        ("/generate", {"num": 5}, 400, "num: at most 4"),
        ("/generate", {"bars": 0}, 422, "bars"),
        ("/generate", {"bars": "many"}, 422, "bars"),
        ("/generate", {"temperature": -1}, 422, "temperature"),
        ("/generate", {"colour": "blue"}, 422, "colour"),
        ("/generate", {"model": "../../etc/passwd"}, 404, "no model named"),
        ("/generate", {"model": "/tmp"}, 404, "no model named"),
        ("/generate", {"prompt": "@@@ not base64"}, 400, "prompt: not base64"),
        ("/generate", {"prompt": base64.b64encode(b"MThd\0\0").decode()}, 400, "prompt"),
        ("/generate", {"prompt": "A" * 40_000}, 413, "limit"),
        ("/generate", {"controls": {"key": "D minor"}}, 400, "controls"),
        ("/generate", {"guidance": 0}, 422, "guidance"),
        ("/generate", {"steer": -1}, 422, "steer"),
        ("/infill", {"midi": _melody(2), "steer": 101}, 422, "steer"),
        ("/generate", {"model": "features", "controls": {"key": "H major"}}, 400, "key"),
        ("/generate", {"model": "features", "controls": {"style": "techno"}}, 400, "style"),
        ("/generate", {"model": "features", "controls": {"density": 99}}, 400, "density"),
        ("/harmonize", {"midi": _melody(2, 2), "model": "features"}, 400, "one track"),
        ("/infill", {"midi": _melody(2), "bars": "1-2"}, 400, "without infilling"),
        ("/infill", {"midi": _melody(2), "bars": "7-9", "model": "features"}, 400, "bars"),
        ("/analyze", {"midi": ""}, 400, "empty"),
        ("/analyze", {}, 422, "midi"),
    ],
)
def test_bad_input_gets_a_one_line_4xx(client, path, body, status, says):
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error and "\n" not in error and "Traceback" not in error


def test_a_body_over_the_limit_is_refused_before_it_is_read(client):
    response = client.post("/analyze", content=b"{" + b" " * 200_000 + b"}",
                           headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413 and "limit" in response.json()["error"]


def test_the_server_stays_healthy_after_bad_input_from_many_threads(client):
    statuses: list[int] = []

    def hit(k: int) -> None:
        body = {"prompt": base64.b64encode(bytes([k]) * 64).decode(), "bars": 1}
        statuses.append(client.post("/generate", json=body).status_code)

    threads = [threading.Thread(target=hit, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses and all(400 <= s < 500 for s in statuses)
    assert _ok(client.get("/health"))["status"] == "ok"


def test_render_gives_wav_audio_of_the_piece(client):
    from aurl.render.audio import check_render

    try:
        check_render()
    except (ValueError, FileNotFoundError) as err:
        pytest.skip(f"no synthesizer here: {err}")
    response = client.post("/render", json={"midi": _melody(2)})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    import io
    import wave

    with wave.open(io.BytesIO(response.content)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert 4.0 <= seconds <= 4.0 * 1.05 + 1.0  # 8 beats at 120 bpm, and a second of release


def test_finished_rows_leave_the_batch_and_the_rest_go_on_as_alone(runs):
    gen = load(runs / "tiny", threads=2)
    vocab = gen.tokenizer.vocab
    batcher = Batcher(gen.model, vocab, max_rows=8)

    def job(bars: int, seed: int, budget: int) -> Job:
        return Job([torch.tensor([BOS])], bars, budget, [None], [RowSampling(seed=seed)],
                   time.monotonic() + 60)  # fmt: skip

    (alone,) = batcher.submit(job(50, 1, 300)).result(timeout=60)
    short = [batcher.submit(job(50, 10 + k, 5)) for k in range(3)]
    (shared,) = batcher.submit(job(50, 1, 300)).result(timeout=60)
    assert all(len(f.result(timeout=5)[0]) == 6 for f in short)
    assert (alone == shared).all() and batcher.engine.batch <= 2  # the short rows left
    (again,) = batcher.submit(job(50, 1, 300)).result(timeout=60)  # into an emptied batch
    batcher.close()
    assert (again == alone).all()


def test_a_piece_made_endless_by_a_stray_event_is_repaired_or_refused(client):
    score = read_midi_bytes(base64.b64decode(_melody(2)))
    far = score.copy()
    far.tracks[0].notes.append(symusic.Note(500_000_000, 480, 60, 80))  # after a huge silence
    out = _ok(client.post("/analyze", json={"midi": base64.b64encode(far.dumps_midi()).decode()}))
    assert out["meter"]["bars"] <= 3  # the stray note was cut, as prepare cuts it
    long = score.copy()
    long.tracks[0].notes.append(symusic.Note(0, 50_000_000, 60, 80))  # one note, 29 hours
    response = client.post("/analyze", json={"midi": base64.b64encode(long.dumps_midi()).decode()})
    assert response.status_code == 413 and "quarter notes long" in response.json()["error"]
