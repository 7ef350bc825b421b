"""Masked signal modelling: self-supervised pre-training of the EEG encoder (DreamDiffusion stage A).

Random temporal tokens of each EEG window are masked (ratio 0.75 by default, the paper's value; the reference code's
default 0.1 is a config value) and an MAE decoder reconstructs them; the loss is the MSE on masked tokens only.
Training follows the reference recipe: AdamW betas (0.9, 0.95), weight decay 0.05 except biases / norms / tokens,
per-step linear warm-up then half-cosine decay to zero, gradient clipping 0.8 (set on the trainer).
The encoder (``mae.encoder``, keys under :data:`ENCODER_PREFIX`) is what fine-tuning loads
(:func:`brain2img.weights.load_by_prefix`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from brain2img.data import schema
from brain2img.encoders.mae1d import MaskedSignalAutoencoder
from brain2img.methods.base import check_brain_batch, seeded_generator
from brain2img.optim import mae_optimization
from brain2img.specs import TINY_EEG_ENCODER, EEGEncoderSpec, eeg_encoder_config

ENCODER_PREFIX = "mae.encoder."


class MaskedSignalPretraining(L.LightningModule):
    """Pre-train an EEG encoder by masked signal modelling on unlabelled windows ``(n_channels, n_times)``.

    Args:
        brain_shape: ``(n_channels, n_times)`` of the windows (linked from the datamodule by the CLI).
        encoder: :class:`~brain2img.specs.EEGEncoderSpec` (or a dict of its fields, or ``None``): ``preset``
            (``tiny`` or ``paper``) plus any :class:`MAE1DConfig` field to override; the channel and time sizes come
            from ``brain_shape``, the mask ratio from ``mask_ratio``. Stored in the hyperparameters as plain data.
        mask_ratio: share of temporal tokens masked (paper 0.75; the reference code's default is 0.1).
        lr: peak learning rate (reference 2.5e-4).
        weight_decay: AdamW weight decay on weights (not biases, norms, tokens).
        betas: AdamW betas.
        warmup_fraction: share of all optimiser steps spent in linear warm-up (reference: 40 of 500 epochs).
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        val_seed: seed of the masks drawn at validation, so validation losses are comparable across epochs.
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (32, 64),
        encoder: EEGEncoderSpec = TINY_EEG_ENCODER,
        mask_ratio: float = 0.75,
        lr: float = 2.5e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_fraction: float = 0.08,
        min_lr_ratio: float = 0.0,
        val_seed: int = 0,
    ) -> None:
        encoder = EEGEncoderSpec.coerce(encoder).to_dict()  # plain data before save_hyperparameters (checkpoints)
        super().__init__()
        self.save_hyperparameters()
        self.brain_shape = tuple(int(s) for s in brain_shape)
        self.config = eeg_encoder_config(self.brain_shape, encoder, mask_ratio=mask_ratio)
        self.mae = MaskedSignalAutoencoder(self.config)

    def _brain(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        brain = batch[schema.BRAIN]
        check_brain_batch(brain, (self.config.n_channels, self.config.n_times), type(self).__name__)
        return brain

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Masked reconstruction loss on a batch of windows."""
        loss, _, _ = self.mae(self._brain(batch))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[schema.BRAIN]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Masked loss with masks seeded by ``val_seed`` and the batch index (same masks every epoch)."""
        x = self._brain(batch)
        gen = seeded_generator(x.device, self.hparams.val_seed, batch_idx)
        loss, _, _ = self.mae(x, generator=gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(x), sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with MAE parameter groups and a per-step warm-up + half-cosine schedule."""
        return mae_optimization(self.mae.named_parameters(), self.trainer.estimated_stepping_batches,
                                self.hparams.lr, self.hparams.weight_decay, self.hparams.betas,
                                self.hparams.warmup_fraction, self.hparams.min_lr_ratio)
