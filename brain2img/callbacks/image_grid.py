"""Save (and log) a ground truth | reconstruction grid of the test set, from rank 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from brain2img.callbacks.metrics_file import run_dir


def make_grid(rows: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """Tile equally long stacks of ``(N, 3, H, W)`` images in ``[0, 1]`` into one uint8 ``(H', W', 3)`` array.

    Each stack becomes one row; a white ``pad`` pixel border separates the tiles.
    """
    n, _, h, w = rows[0].shape
    grid = np.ones((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), dtype=np.float32)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y : y + h, x : x + w] = image.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (grid * 255).round().astype(np.uint8)


class ReconstructionGrid(L.Callback):
    """Collect the first ``n_images`` test reconstructions and write ``<run dir>/<filename>``.

    The top row holds the ground-truth stimuli, the bottom row their reconstructions. The method's ``test_step`` must
    return a dict with ``image`` (ground truth) and ``reconstruction`` tensors ``(B, 3, H, W)`` in ``[0, 1]``. The grid
    is also sent to a W&B or TensorBoard logger when one is configured.

    Args:
        n_images: how many test samples to show.
        filename: name of the PNG file.
    """

    def __init__(self, n_images: int = 12, filename: str = "test_reconstructions.png") -> None:
        self.n_images = n_images
        self.filename = filename
        self._gt: list[torch.Tensor] = []
        self._rec: list[torch.Tensor] = []
        self.path: Path | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Forget images of an earlier test run."""
        self._gt, self._rec = [], []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, *args: Any
    ) -> None:
        """Keep images until ``n_images`` are collected."""
        if not isinstance(outputs, dict) or "reconstruction" not in outputs:
            return
        have = sum(len(x) for x in self._gt)
        if have >= self.n_images:
            return
        take = self.n_images - have
        self._gt.append(outputs["image"][:take].detach().cpu())
        self._rec.append(outputs["reconstruction"][:take].detach().cpu())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the PNG and log it (rank 0; the run dir is resolved on every rank, as DDP requires)."""
        path = run_dir(trainer) / self.filename
        if not self._gt or not trainer.is_global_zero:
            return
        grid = make_grid([torch.cat(self._gt), torch.cat(self._rec)])
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(self.path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/reconstructions", images=[grid], caption=["top: stimulus, bottom: recon"])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("test/reconstructions", grid, trainer.global_step, dataformats="HWC")
