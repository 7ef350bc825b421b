"""Write the test metrics of a run to a JSON file beside its logs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run: the logger's log dir, else the trainer's default root dir.

    Call it on every rank: under DDP ``trainer.log_dir`` broadcasts from rank 0.
    """
    log_dir = trainer.log_dir if trainer.loggers else None
    return Path(log_dir or trainer.default_root_dir)


class MetricsFile(L.Callback):
    """After ``test``, write every logged ``test/*`` value to ``<run dir>/<filename>`` as JSON (rank 0 only).

    Args:
        filename: name of the JSON file.
    """

    def __init__(self, filename: str = "metrics_test.json") -> None:
        self.filename = filename
        self.path: Path | None = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Collect ``test/`` metrics from ``trainer.callback_metrics`` and write them (rank 0)."""
        self.path = run_dir(trainer) / self.filename  # on every rank: trainer.log_dir is a collective under DDP
        if not trainer.is_global_zero:
            return
        metrics = {
            k.removeprefix("test/"): float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("test/") and v.numel() == 1
        }
        metrics = {k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(metrics, indent=2) + "\n")
