"""Where training numbers go: ``metrics.jsonl`` (one JSON object per line) and TensorBoard.

Only rank 0 writes. TensorBoard event files go under ``RUN/tb/`` (``tensorboard --logdir
runs`` shows every run); every scalar of a record is logged under its name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METRICS = "metrics.jsonl"
TENSORBOARD = "tb"


def trim_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint so the curve stays one line."""
    path = run_dir / METRICS
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


class RunLog:
    """Appends records to ``metrics.jsonl`` and mirrors their scalars to TensorBoard.

    Args:
        run_dir: the run folder.
        enabled: False on ranks other than 0 (nothing is written).
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # 1.5 s to import: only when used

            self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD))

    def write(self, record: dict, group: str = "train") -> None:
        """Append ``record`` (it holds ``step``) and log its numbers as ``group/name``."""
        if not self.enabled:
            return
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            step = record["step"]
            for name, value in record.items():
                if (
                    name != "step"
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    self.writer.add_scalar(f"{group}/{name}", value, step)

    def image(self, name: str, image: np.ndarray, step: int) -> None:
        """An (H, W, 3) uint8 picture, in TensorBoard only."""
        if self.enabled and self.writer is not None:
            self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
