"""fMRI pre-training on unlabelled voxel vectors: DC-MAE stage 1 (double contrast) or MinD-Vis SC-MBM (masked MSE).

Both mask 75 % of the 16-voxel patches and reconstruct them with the fMRI masked autoencoder
(:class:`~brain2img.encoders.fmri_mae.MaskedFMRIAutoencoder`). The loss is the reference's
(``MAEforFMRIContrast.forward`` in soinx0629/vis_dec_neurips)::

    mask_loss_weight * MSE(masked patches)
        + contrastive_weight * (self_contrast_weight * InfoNCE(rec_1, input)
                                + cross_contrast_weight * InfoNCE(rec_1, rec_2))

where ``rec_1`` and ``rec_2`` are the reconstructions (padded voxel vectors) of two independent maskings of each
sample and the InfoNCE is row-wise over in-batch negatives, cosine / temperature 0.1
(:func:`brain2img.losses.info_nce`; ``gather=True`` takes the negatives of every DDP rank). The defaults are the
reference's *effective* values: its ``contrastive_loss_weight`` stays 0.5 whatever ``--contrast_loss_weight`` says
(that flag sets an unused attribute), ``self_contrast_loss_weight`` is 0.5 with no flag, the mask loss is off
unless ``--do_mask_loss True`` (and argparse's ``type=bool`` reads "False" as True). Here every weight is a plain
number. MinD-Vis SC-MBM is ``mask_loss_weight=1, contrastive_weight=0``.

Training follows the MAE recipe (AdamW betas (0.9, 0.95), weight decay 0.05 except biases / norms / tokens,
per-step warm-up then half-cosine decay; gradient clipping 0.8 on the trainer). The encoder (keys under
:data:`ENCODER_PREFIX`) is what stage 2 (:class:`~brain2img.methods.dcmae_cross.DCMAECrossModal`) and stage 3
(:class:`~brain2img.methods.dcmae.DCMAE`) load.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from brain2img.data import schema
from brain2img.encoders.fmri_mae import MaskedFMRIAutoencoder
from brain2img.losses import info_nce
from brain2img.methods.base import check_brain_batch, seeded_generator
from brain2img.optim import mae_optimization
from brain2img.specs import TINY_FMRI_ENCODER, FMRIEncoderSpec, fmri_encoder_config

ENCODER_PREFIX = "mae.encoder."


class FMRIPretraining(L.LightningModule):
    """Pre-train an fMRI encoder on unlabelled voxel vectors ``(n_voxels,)`` (see the module docstring).

    Args:
        brain_shape: ``(n_voxels,)`` (linked from the datamodule by the CLI; a corpus is padded to its longest
            subject).
        encoder: :class:`~brain2img.specs.FMRIEncoderSpec`: ``preset`` (``tiny`` or ``paper``) plus overrides.
        mask_ratio: share of patches masked (reference 0.75).
        mask_loss_weight: weight of the masked-patch MSE (DC-MAE reference: 0; MinD-Vis: 1).
        contrastive_weight: weight of the sum of the two contrastive terms (reference 0.5).
        self_contrast_weight: weight of InfoNCE(reconstruction of view 1, unmasked input) (reference 0.5).
        cross_contrast_weight: weight of InfoNCE(reconstruction of view 1, reconstruction of view 2) (0.5).
        temperature: InfoNCE temperature (reference 0.1).
        gather: contrast against the negatives of every DDP rank.
        lr: peak learning rate (reference 2.5e-4).
        weight_decay: AdamW weight decay on weights.
        betas: AdamW betas.
        warmup_fraction: share of optimiser steps in linear warm-up (reference 40 of 140 epochs ~ 0.29).
        min_lr_ratio: final learning rate / ``lr``.
        val_seed: seed of the validation masks (the same masks every epoch).
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (100,),
        encoder: FMRIEncoderSpec = TINY_FMRI_ENCODER,
        mask_ratio: float = 0.75,
        mask_loss_weight: float = 0.0,
        contrastive_weight: float = 0.5,
        self_contrast_weight: float = 0.5,
        cross_contrast_weight: float = 0.5,
        temperature: float = 0.1,
        gather: bool = True,
        lr: float = 2.5e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_fraction: float = 0.29,
        min_lr_ratio: float = 0.0,
        val_seed: int = 0,
    ) -> None:
        encoder = FMRIEncoderSpec.coerce(encoder).to_dict()  # plain data before save_hyperparameters (checkpoints)
        super().__init__()
        self.save_hyperparameters()
        weights = {"mask_loss_weight": mask_loss_weight, "contrastive_weight": contrastive_weight,
                   "self_contrast_weight": self_contrast_weight, "cross_contrast_weight": cross_contrast_weight}
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {weights} (model.*_weight)")
        contrast = contrastive_weight * (self_contrast_weight + cross_contrast_weight)
        if mask_loss_weight == 0 and contrast == 0:
            raise ValueError(f"every loss term has weight 0 ({weights}): nothing would train")
        self.brain_shape = tuple(int(s) for s in brain_shape)
        self.config = fmri_encoder_config(self.brain_shape, encoder, mask_ratio=mask_ratio)
        self.mae = MaskedFMRIAutoencoder(self.config)

    def _brain(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        brain = batch[schema.BRAIN]
        check_brain_batch(brain, self.brain_shape, type(self).__name__)
        return brain

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The loss terms and their weighted sum for voxel vectors ``x`` ``(B, n_voxels)``."""
        hp, mae = self.hparams, self.mae
        latent, mask, ids_restore = mae.encoder.forward_masked(x, hp.mask_ratio, generator=generator)
        pred = mae.forward_decoder(latent, ids_restore)
        out = {"mask": mae.masked_loss(x, pred, mask)}
        zero = out["mask"].new_zeros(())
        rec = mae.reconstruction(pred)
        out["self"] = info_nce(rec, mae.signal(x), hp.temperature, gather=hp.gather) \
            if hp.self_contrast_weight > 0 and hp.contrastive_weight > 0 else zero
        if hp.cross_contrast_weight > 0 and hp.contrastive_weight > 0:
            latent2, _, ids2 = mae.encoder.forward_masked(x, hp.mask_ratio, generator=generator)
            out["cross"] = info_nce(rec, mae.reconstruction(mae.forward_decoder(latent2, ids2)), hp.temperature,
                                    gather=hp.gather)
        else:
            out["cross"] = zero
        contrast = hp.self_contrast_weight * out["self"] + hp.cross_contrast_weight * out["cross"]
        out["loss"] = hp.mask_loss_weight * out["mask"] + hp.contrastive_weight * contrast
        return out

    def _log(self, stage: str, out: dict[str, torch.Tensor], batch_size: int) -> None:
        sync = stage == "val"
        self.log(f"{stage}/loss", out["loss"], prog_bar=True, batch_size=batch_size, sync_dist=sync)
        self.log_dict({f"{stage}/loss_{k}": out[k] for k in ("mask", "self", "cross")}, batch_size=batch_size,
                      sync_dist=sync)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Weighted loss on a batch of voxel vectors."""
        out = self.losses(self._brain(batch))
        self._log("train", out, len(batch[schema.BRAIN]))
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Losses with masks seeded by ``val_seed`` and the batch index (the same masks every epoch)."""
        x = self._brain(batch)
        gen = seeded_generator(x.device, self.hparams.val_seed, batch_idx)
        self._log("val", self.losses(x, gen), len(x))

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with MAE parameter groups and a per-step warm-up + half-cosine schedule."""
        return mae_optimization(self.mae.named_parameters(), self.trainer.estimated_stepping_batches,
                                self.hparams.lr, self.hparams.weight_decay, self.hparams.betas,
                                self.hparams.warmup_fraction, self.hparams.min_lr_ratio)
