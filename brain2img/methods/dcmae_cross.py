"""DC-MAE stage 2, cross-modal guidance: the fMRI and image autoencoders reconstruct their own masked input while
attending to each other (``phase2_finetune_cross.py`` in soinx0629/vis_dec_neurips).

- fMRI side: the stage-1 encoder masks 75 % of the patches; before its final norm, ``cross_map_in`` (1024 -> 768),
  3 cross-attention blocks whose queries are the fMRI tokens and keys/values the image encoder's *unmasked* tokens
  (ViT-MAE-base: 197 x 768), a residual, and ``cross_map_out`` (768 -> 1024); a fresh decoder of depth 6
  reconstructs the masked patches (MSE).
- image side: ViT-MAE (:class:`~brain2img.encoders.image_mae.ImageMAE`) masks 50 % of the image patches; 3 cross
  blocks let its latent attend to ``Linear(1024 -> 768)`` of the unmasked fMRI tokens; its decoder reconstructs the
  masked pixels. The ViT encoder is frozen, as the reference's; its decoder and the cross parts train.
- loss = ``0.25 * L_fMRI + 1.5 * L_image``, one AdamW (betas (0.9, 0.95), weight decay 0.05, warm-up + cosine).

Differences from the reference code: checkpoints are chosen on the validation loss (the reference saves when the
*test* reconstruction correlation improves); the fMRI decoder starts fresh rather than from stage 1's 8-block one.
Stage 3 (:class:`~brain2img.methods.dcmae.DCMAE`) loads the encoder (keys under ``mae.encoder.``, cross parts
dropped).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from brain2img.data import schema
from brain2img.encoders.fmri_mae import RESIZABLE, MaskedFMRIAutoencoder
from brain2img.encoders.image_mae import TINY_IMAGE_MAE, ImageMAE, ImageMAESpec
from brain2img.encoders.transformer import CrossAttentionBlock, CrossStack
from brain2img.methods.base import check_brain_batch, seeded_generator
from brain2img.methods.fmri_pretrain import ENCODER_PREFIX
from brain2img.optim import mae_optimization
from brain2img.specs import TINY_FMRI_ENCODER, FMRIEncoderSpec, fmri_encoder_config
from brain2img.weights import load_by_prefix


class DCMAECrossModal(L.LightningModule):
    """Tune a pre-trained fMRI encoder with cross-modal image guidance (see the module docstring).

    Args:
        brain_shape: ``(n_voxels,)`` (linked from the paired datamodule).
        encoder: :class:`~brain2img.specs.FMRIEncoderSpec`; must match the stage-1 encoder's sizes.
        encoder_checkpoint: a :class:`~brain2img.methods.fmri_pretrain.FMRIPretraining` checkpoint (``None``: a
            random encoder, the "no stage 1" ablation). Loaded when fitting starts; a checkpoint of another voxel
            count loads with this subject's positional table.
        image_mae: :class:`~brain2img.encoders.image_mae.ImageMAESpec` (``hf`` with a local ViT-MAE folder, or
            ``tiny``).
        fmri_mask_ratio: share of fMRI patches masked (0.75).
        n_cross: cross-attention blocks on each side (3).
        cross_heads: heads of the cross blocks (ViT-MAE-base: 12; must divide the image width).
        fmri_decoder_depth: blocks of the fMRI decoder (6).
        fmri_weight: weight of the fMRI reconstruction loss (0.25).
        image_weight: weight of the image reconstruction loss (1.5).
        lr: peak learning rate (5.3e-5).
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_fraction: share of steps in warm-up (reference 2 of 60 epochs).
        min_lr_ratio: final learning rate / ``lr``.
        val_seed: seed of the validation masks.
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (100,),
        encoder: FMRIEncoderSpec = TINY_FMRI_ENCODER,
        encoder_checkpoint: str | None = None,
        image_mae: ImageMAESpec = TINY_IMAGE_MAE,
        fmri_mask_ratio: float = 0.75,
        n_cross: int = 3,
        cross_heads: int = 4,
        fmri_decoder_depth: int = 6,
        fmri_weight: float = 0.25,
        image_weight: float = 1.5,
        lr: float = 5.3e-5,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_fraction: float = 0.033,
        min_lr_ratio: float = 0.0,
        val_seed: int = 0,
    ) -> None:
        encoder = FMRIEncoderSpec.coerce(encoder).to_dict()
        image_mae = ImageMAESpec.coerce(image_mae).to_dict()
        super().__init__()
        self.save_hyperparameters()
        if fmri_weight < 0 or image_weight < 0 or fmri_weight + image_weight == 0:
            raise ValueError(f"need fmri_weight, image_weight >= 0 and not both 0, got {fmri_weight}, {image_weight}")
        self.brain_shape = tuple(int(s) for s in brain_shape)
        self.config = fmri_encoder_config(self.brain_shape, encoder, mask_ratio=fmri_mask_ratio,
                                          decoder_depth=fmri_decoder_depth)
        self.mae = MaskedFMRIAutoencoder(self.config)
        self.image = ImageMAE(image_mae)
        self.image.model.vit.requires_grad_(False)
        width, img = self.config.embed_dim, self.image.hidden_size
        self.fmri_cross = CrossStack(width, img, width, n_cross, cross_heads)
        self.fmri_to_image = nn.Linear(width, img)
        self.image_cross = nn.ModuleList(CrossAttentionBlock(img, cross_heads) for _ in range(n_cross))

    def setup(self, stage: str) -> None:
        """Before fitting from scratch, load the stage-1 encoder."""
        if stage != "fit" or self._trainer is None or self.trainer.ckpt_path is not None:
            return
        path = self.hparams.encoder_checkpoint
        if path:
            c = self.config
            load_by_prefix(self.mae.encoder, path, ENCODER_PREFIX,
                           f"a stage-1 fMRI encoder (FMRIPretraining) of width {c.embed_dim}, depth {c.depth} "
                           "(model.encoder_checkpoint)", keep_if_resized=RESIZABLE)

    def train(self, mode: bool = True) -> DCMAECrossModal:
        """The frozen ViT encoder stays in eval mode."""
        super().train(mode)
        self.image.model.vit.eval()
        return self

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """fMRI and image reconstruction losses and their weighted sum."""
        x = batch[schema.BRAIN]
        check_brain_batch(x, self.brain_shape, type(self).__name__)
        pixels = self.image.pixels(batch[schema.IMAGE])
        with torch.no_grad():
            image_tokens = self.image.tokens(pixels)
        mae = self.mae
        latent, mask, ids = mae.encoder.forward_masked(
            x, self.hparams.fmri_mask_ratio, generator=generator,
            before_norm=lambda h: self.fmri_cross(h, image_tokens))
        fmri = mae.masked_loss(x, mae.forward_decoder(latent, ids), mask)
        context = self.fmri_to_image(mae.encoder(x))
        img_latent, img_mask, img_ids = self.image.masked(pixels, generator)
        for block in self.image_cross:
            img_latent = block(img_latent, context)
        image = self.image.decode_loss(pixels, img_latent, img_ids, img_mask)
        loss = self.hparams.fmri_weight * fmri + self.hparams.image_weight * image
        return {"loss": loss, "fmri": fmri, "image": image}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One step on the weighted loss."""
        out = self.losses(batch)
        bs = len(batch[schema.BRAIN])
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({"train/loss_fmri": out["fmri"], "train/loss_image": out["image"]}, batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Losses with masks seeded by ``val_seed`` and the batch index."""
        gen = seeded_generator(self.device, self.hparams.val_seed, batch_idx)
        out = self.losses(batch, gen)
        self.log_dict({f"val/{k}" if k == "loss" else f"val/loss_{k}": v for k, v in out.items()},
                      batch_size=len(batch[schema.BRAIN]), sync_dist=True, prog_bar=False)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the trainable parts, warm-up + half-cosine per step."""
        return mae_optimization(self.named_parameters(), self.trainer.estimated_stepping_batches, self.hparams.lr,
                                self.hparams.weight_decay, self.hparams.betas, self.hparams.warmup_fraction,
                                self.hparams.min_lr_ratio)
