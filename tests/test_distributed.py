"""Data-parallel training with torchrun on CPU (gloo): two processes of b windows train as one
of 2b; a job killed mid-run resumes as a two-"node" job on 127.0.0.1 and continues the same
curve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aurl.config import load_config
from aurl.models import load_model
from aurl.train.feed import window_indices
from aurl.train.lm import train_run

TINY = str(Path(__file__).parents[1] / "configs" / "tiny.yaml")
TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# a constant learning rate, so that a run of 3 steps extended to 6 is a run of 6
SETTINGS = ["train.max_steps=6", "train.eval_every=3", "train.checkpoint_every=3",
            "train.log_every=1", "train.eval_windows=4", "train.warmup_steps=0",
            "train.min_lr=3.0e-3", "train.tensorboard=false", "model.dropout=0.0"]  # fmt: skip


@pytest.mark.parametrize("world,accum,batch", [(1, 1, 4), (2, 1, 2), (2, 3, 1), (3, 2, 5)])
def test_every_window_of_a_step_is_read_once(world, accum, batch):
    for step in range(3):
        read = [i for r in range(world) for m in range(accum)
                for i in window_indices(step, m, r, world, batch, accum)]  # fmt: skip
        per_step = world * accum * batch
        assert sorted(read) == list(range(step * per_step, (step + 1) * per_step))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], *overrides: str, env: dict | None = None) -> list[subprocess.Popen]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [TORCHRUN, *args, "-m", "aurl", "train", "--config", TINY, "--quiet", *overrides]
    return [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)]  # fmt: skip


def finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]


def curve(run: Path) -> list[tuple[int, float]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in lines if "loss" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def assert_same_training(a: Path, b: Path) -> None:
    ca, cb = curve(a), curve(b)
    assert [s for s, _ in ca] == [s for s, _ in cb] == list(range(1, 7))
    assert [x for _, x in ca] == pytest.approx([x for _, x in cb], abs=2e-5)
    wa, wb = weights(a), weights(b)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


@pytest.fixture(scope="module")
def reference(small_corpus, tmp_path_factory) -> Path:
    """One process, 4 windows a step."""
    config = load_config(TINY, [f"data.source={small_corpus}", "train.batch_size=4", *SETTINGS])
    run = tmp_path_factory.mktemp("ddp") / "one"
    train_run(config, run, progress=False)
    return run


@pytest.mark.slow
def test_two_processes_of_b_train_as_one_of_2b(reference, small_corpus, tmp_path):
    runs = ["--runs-dir", str(tmp_path), "--name", "two"]
    finish(torchrun(["--standalone", "--nproc_per_node=2"], *runs,
                    f"data.source={small_corpus}", "train.batch_size=2", *SETTINGS))  # fmt: skip
    assert_same_training(reference, tmp_path / "two")
    meta = load_model(tmp_path / "two" / "model").meta
    assert meta["training"]["processes"] == 2


CRASH = """
import os
if os.environ.get("RANK") == "0":  # a worker of the job, not torchrun itself
    import aurl.train.feed as feed

    real = feed.BatchFeed.__call__

    def dies(self, step, micro=0):
        if step == 4:
            os._exit(137)  # as if the machine killed it, after the step-3 checkpoint
        return real(self, step, micro)

    feed.BatchFeed.__call__ = dies
"""


@pytest.mark.slow
def test_killed_then_resumed_on_two_nodes_continues_the_same_curve(reference, small_corpus,
                                                                    tmp_path):  # fmt: skip
    """Two processes are killed at step 5 of 6; the run resumes as two "nodes" (one process
    each, c10d rendezvous on 127.0.0.1) and ends as the uninterrupted run did."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(CRASH)
    runs = ["--runs-dir", str(tmp_path), "--name", "killed"]
    data = [f"data.source={small_corpus}", "train.batch_size=2", *SETTINGS]
    (crashed,) = torchrun(["--standalone", "--nproc_per_node=2"], *runs, *data,
                          env={"PYTHONPATH": str(hooks)})  # fmt: skip
    crashed.communicate(timeout=240)
    assert crashed.returncode != 0
    assert (
        torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["loop"]["step"] == 3
    )
    node = ["--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--rdzv-id=aurl-test"]  # fmt: skip
    finish([torchrun(node, *runs, "--resume")[0] for _ in range(2)])
    assert_same_training(reference, tmp_path / "killed")
