"""What every reconstruction method shares: input checks, test-time metrics, prediction outputs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from brain2img.data import schema
from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.simulated import TinySimulatedBackbone
from brain2img.encoders.image_features import EfficientNetLite0Features
from brain2img.metrics import ReconstructionMetrics
from brain2img.metrics.classifiers import build_feature_net
from brain2img.specs import MetricsSpec


def check_brain_batch(brain: torch.Tensor, brain_shape: tuple[int, ...], owner: str) -> None:
    """Refuse a batch ``(B, *brain_shape)`` of the wrong shape or with NaN/Inf values, saying what was expected."""
    if tuple(brain.shape[1:]) != tuple(brain_shape):
        kind = "voxels" if len(brain_shape) == 1 else "(channels, times)"
        raise ValueError(
            f"{owner} was built for brain samples of shape {tuple(brain_shape)} ({kind}), "
            f"but the data has shape {tuple(brain.shape[1:])}: use data with the same {kind} as the training data "
            "(check data.* settings, e.g. subject, ROI mask, channel selection or window length)"
        )
    if not torch.isfinite(brain).all():
        bad = (~torch.isfinite(brain.reshape(len(brain), -1))).any(1).nonzero().flatten().tolist()
        raise ValueError(f"brain data contains NaN or Inf values (batch rows {bad[:10]}); clean or mask them first")


def seeded_generator(device: torch.device | str, seed: int, index: int) -> torch.Generator:
    """A generator on ``device`` seeded by ``seed`` and ``index`` (a batch index or stimulus id): the same random
    draws for the same batch whatever the epoch or order (validation masks and noise, sampling)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)


class ReconstructionMethod(L.LightningModule):
    """Base LightningModule for brain -> image methods.

    Subclasses implement :meth:`embed` (a brain embedding for retrieval, plus the matching image embedding) and
    :meth:`reconstruct` (images from brain data). This class checks inputs, runs the shared test metrics
    (:class:`~brain2img.metrics.ReconstructionMetrics`, with bootstrap confidence intervals) and returns predictions
    in the shape :class:`~brain2img.callbacks.PredictionWriter` writes.

    Args:
        brain_shape: shape of one brain sample, ``(n_voxels,)`` or ``(n_channels, n_times)``; linked from the
            datamodule by the CLI and stored in checkpoints, so data of another shape is refused.
        metrics: :class:`~brain2img.specs.MetricsSpec` (or a dict of its fields, or ``None``): the keyword arguments
            of :class:`~brain2img.metrics.ReconstructionMetrics`, plus ``classifier``: the feature net's settings for
            :func:`~brain2img.metrics.classifiers.build_feature_net` (``kind: null``, the default: the method's
            EfficientNet-Lite0 image encoder, or a fresh one).
        seed: seed of the sampling noise at test/predict time (same seed, same images).
    """

    def __init__(self, brain_shape: tuple[int, ...], metrics: MetricsSpec | dict[str, Any] | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        self.brain_shape = tuple(int(s) for s in brain_shape)
        self.metric_kwargs = MetricsSpec.coerce(metrics).to_dict()
        self.seed = seed
        self.test_metrics: ReconstructionMetrics | None = None
        self._val_emb: list[tuple[torch.Tensor, torch.Tensor]] = []
        # the parts every method declares (a subclass assigns the modules; None: the method has no such part)
        self.backbone: LatentDiffusion | None = None  # the shared latent-diffusion generator
        self.image_encoder: nn.Module | None = None  # the image encoder the generator is conditioned on / metrics use

    # ------------------------------------------------------------------ to implement
    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(brain_embedding (B, D), image_embedding (B, D) or None)`` for retrieval."""
        raise NotImplementedError

    def reconstruct(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Return reconstructions ``(B, 3, H, W)`` in ``[0, 1]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def check_brain(self, brain: torch.Tensor) -> None:
        """Refuse brain data of the wrong shape or with NaN/Inf values (see :func:`check_brain_batch`)."""
        check_brain_batch(brain, self.brain_shape, type(self).__name__)

    def sampling_generator(self, batch: dict[str, torch.Tensor]) -> torch.Generator:
        """A generator seeded by ``seed`` and the batch's first stimulus id: reproducible whatever the batch order."""
        first = int(batch[schema.STIMULUS_ID][0]) if len(batch[schema.STIMULUS_ID]) else 0
        return seeded_generator(self.device, self.seed, first)

    def prepare_generator(self) -> bool:
        """When fitting from scratch (not resuming), train or load a backbone that needs its datamodule's stimuli
        (``tiny_simulated``), with the method's ``image_encoder`` as its condition. Returns whether it did."""
        trainer = self._trainer
        if trainer is None or trainer.ckpt_path is not None or not isinstance(self.backbone, TinySimulatedBackbone):
            return False
        if trainer.datamodule is None:
            return False
        self.backbone.prepare(trainer.datamodule, self.image_encoder)
        return True

    def on_validation_epoch_start(self) -> None:
        """Start collecting validation embeddings (see :meth:`collect_val_embeddings`)."""
        self._val_emb: list[tuple[torch.Tensor, torch.Tensor]] = []

    def collect_val_embeddings(self, brain_emb: torch.Tensor, image_emb: torch.Tensor) -> None:
        """Keep a validation batch's ``(B, D)`` brain and image embeddings for ``val/retrieval_top1``."""
        self._val_emb.append((brain_emb.detach().flatten(1).float(), image_emb.detach().flatten(1).float()))

    def on_validation_epoch_end(self) -> None:
        """Log retrieval top-1 among this rank's validation samples, the model-selection scores of methods that
        collect embeddings: ``val/retrieval_top1`` (brain -> image), ``val/retrieval_top1_image_to_brain`` and
        ``val/retrieval_top1_both`` (their mean)."""
        if not self._val_emb:
            return
        brain = torch.nn.functional.normalize(torch.cat([b for b, _ in self._val_emb]), dim=1)
        image = torch.nn.functional.normalize(torch.cat([i for _, i in self._val_emb]), dim=1)
        sim = brain @ image.T
        own = torch.arange(len(brain), device=brain.device)
        b2i = (sim.argmax(dim=1) == own).float().mean()
        i2b = (sim.argmax(dim=0) == own).float().mean()
        self.log("val/retrieval_top1", b2i, prog_bar=True, sync_dist=True)
        self.log("val/retrieval_top1_image_to_brain", i2b, sync_dist=True)
        self.log("val/retrieval_top1_both", (b2i + i2b) / 2, sync_dist=True)
        self._val_emb = []

    def on_test_epoch_start(self) -> None:
        """Create the metrics on the right device, reusing the method's image encoder as feature net if it has one."""
        kwargs = dict(self.metric_kwargs)
        classifier = kwargs.pop("classifier", None)
        if classifier is not None:  # e.g. {"kind": "torchvision", "name": "vit_h_14", "weights_path": ...}
            feature_net = build_feature_net(**classifier)
        else:
            feature_net = self.image_encoder
            if not isinstance(feature_net, EfficientNetLite0Features):
                feature_net = None  # e.g. a CLIP encoder: no ImageNet logits; the metrics build their own classifier
        self.test_metrics = ReconstructionMetrics(feature_net=feature_net, **kwargs).to(self.device)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Reconstruct, update the metrics and return images for the grid callback."""
        self.check_brain(batch[schema.BRAIN])
        brain_emb, image_emb = self.embed(batch)
        recon = self.reconstruct(batch, self.sampling_generator(batch))
        assert self.test_metrics is not None
        self.test_metrics.update(batch[schema.IMAGE], recon, batch[schema.STIMULUS_ID], brain_emb, image_emb)
        return {"image": batch[schema.IMAGE], "reconstruction": recon}

    def on_test_epoch_end(self) -> None:
        """Compute the metrics with bootstrap 95% confidence intervals and log them under ``test/``."""
        assert self.test_metrics is not None
        values = self.test_metrics.compute(with_ci=True)
        self.log_dict({f"test/{k}": float(v) for k, v in values.items()}, sync_dist=False, rank_zero_only=False)
        self.test_metrics = None

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Return reconstructions, brain embeddings and stimulus ids for :class:`PredictionWriter`."""
        self.check_brain(batch[schema.BRAIN])
        brain_emb, _ = self.embed(batch)
        recon = self.reconstruct(batch, self.sampling_generator(batch))
        return {"reconstruction": recon, "embedding": brain_emb, "stimulus_id": batch[schema.STIMULUS_ID]}
