"""Write predictions to disk: PNG reconstructions, ``.npy`` brain embeddings and a manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

MANIFEST = "manifest.json"


class PredictionWriter(BasePredictionWriter):
    """Save what ``predict_step`` returns, one file per sample, and a manifest mapping stimulus id to files.

    ``predict_step`` must return a dict with ``reconstruction`` ``(B, 3, H, W)`` in ``[0, 1]``, ``embedding``
    ``(B, D)`` and ``stimulus_id`` ``(B,)``. Files: ``<output_dir>/reconstructions/<stimulus_id>.png``,
    ``<output_dir>/embeddings/<stimulus_id>.npy`` and ``<output_dir>/manifest.json``. Under DDP every rank writes its
    own samples and rank 0 writes the merged manifest.

    Args:
        output_dir: folder to write into. It must not hold an earlier manifest unless ``overwrite`` is set, so that
            nothing already written is lost by accident.
        overwrite: allow writing into a folder that holds earlier predictions.
    """

    def __init__(self, output_dir: str | Path, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self._entries: list[dict[str, Any]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Refuse to clobber earlier predictions."""
        if stage == "predict" and (self.output_dir / MANIFEST).exists() and not self.overwrite:
            raise FileExistsError(
                f"'{self.output_dir}' already holds predictions ({MANIFEST}); choose another --output_dir "
                "or pass --overwrite_predictions true"
            )
        self._entries = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, torch.Tensor],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the batch's PNGs and embeddings and remember their manifest entries."""
        rec_dir, emb_dir = self.output_dir / "reconstructions", self.output_dir / "embeddings"
        rec_dir.mkdir(parents=True, exist_ok=True)
        emb_dir.mkdir(parents=True, exist_ok=True)
        images = (prediction["reconstruction"].detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        for image, emb, sid in zip(images.cpu(), prediction["embedding"].detach().float().cpu(),
                                   prediction["stimulus_id"].cpu(), strict=True):
            name = f"{int(sid):06d}"
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(rec_dir / f"{name}.png")
            np.save(emb_dir / f"{name}.npy", emb.numpy())
            self._entries.append(
                {"stimulus_id": int(sid), "reconstruction": f"reconstructions/{name}.png",
                 "embedding": f"embeddings/{name}.npy"}
            )

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Merge the entries of every rank and write the manifest from rank 0."""
        entries = self._entries
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, entries)
            entries = [e for part in gathered for e in part]
        if trainer.is_global_zero:
            unique = {e["stimulus_id"]: e for e in entries}  # DistributedSampler padding repeats samples
            payload = {"n_samples": len(unique), "samples": [unique[k] for k in sorted(unique)]}
            (self.output_dir / MANIFEST).write_text(json.dumps(payload, indent=2) + "\n")
