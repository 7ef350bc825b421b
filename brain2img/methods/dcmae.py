"""DC-MAE, "Contrast, Attend and Diffuse" (Sun et al., NeurIPS 2023; soinx0629/vis_dec_neurips): images from fMRI
in three stages. This module is stage 3 and the method's whole story:

1. :class:`~brain2img.methods.fmri_pretrain.FMRIPretraining`: the fMRI masked autoencoder (16-voxel patches,
   encoder 1024 x 24, mask 0.75) pre-trained on a large unlabelled corpus (HCP: ~136,000 samples) with double
   contrast: InfoNCE of a masked view's reconstruction against the input and against a second view's.
2. :class:`~brain2img.methods.dcmae_cross.DCMAECrossModal`: the encoder tuned on the labelled subject with
   cross-attention to a ViT-MAE's image tokens (and the image autoencoder to the fMRI tokens); loss 0.25 x fMRI +
   1.5 x image.
3. :class:`DCMAE` (here): the stage-2 encoder (cross blocks dropped) conditions the latent-diffusion generator as
   MinD-Vis's DC-LDM does: all 335 tokens (GOD sbj_3) -> ``Conv1d(L -> L/2 -> 77)`` + ``Linear(1024 -> 512)``
   cross-attention tokens (69,048 + 524,800 parameters for the label2img LDM's 77 x 512 context) and a time
   condition added to the timestep embedding ("double conditioning"); the encoder and the UNet's cross-attention
   train, the rest of the generator stays frozen. Sampling: PLMS 250 steps, no guidance, 5 samples per input.

Stage 3 shares its machinery with :class:`~brain2img.methods.dreamdiffusion.DreamDiffusion` (the same conditioning
heads and trainable set; MinD-Vis is DreamDiffusion's ancestor): only the encoder differs, and the CLIP alignment
loss is off by default (``clip_weight=0``: the reference has none; then the retrieval columns of the test metrics,
computed on the untrained CLIP projection, are at chance and say nothing about the method). On the offline
``tiny_simulated`` generator, whose condition is an image embedding, use ``conditioning: embedding`` with
``clip_weight: 1`` (``conf/dcmae/finetune_simulated.yaml``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from brain2img.encoders.fmri_mae import RESIZABLE, FMRIEncoder, FMRIMAEConfig
from brain2img.methods.dreamdiffusion import DreamDiffusion
from brain2img.methods.fmri_pretrain import ENCODER_PREFIX
from brain2img.specs import TINY_FMRI_ENCODER, FMRIEncoderSpec, fmri_encoder_config
from brain2img.weights import load_by_prefix


class DCMAE(DreamDiffusion):
    """DC-MAE stage 3: a pre-trained fMRI encoder conditions the shared latent-diffusion backbone.

    Args:
        brain_shape: ``(n_voxels,)`` (linked from the datamodule).
        encoder: :class:`~brain2img.specs.FMRIEncoderSpec`; must match the pre-trained encoder's sizes.
        encoder_checkpoint: a stage-2 (:class:`~brain2img.methods.dcmae_cross.DCMAECrossModal`) checkpoint, or a
            stage-1 (:class:`~brain2img.methods.fmri_pretrain.FMRIPretraining`) one to skip stage 2, or ``None``
            (random encoder: the "no pre-training" ablation). A stage-2 checkpoint must be of this voxel count
            (stage 2 is subject-specific); a stage-1 one may be of another (a corpus), its positions are recomputed.
        clip_weight: weight of the CLIP alignment loss (reference: 0, none).
        num_samples: images sampled per input (reference 5).
        **kwargs: the other :class:`~brain2img.methods.dreamdiffusion.DreamDiffusion` settings (``backbone``,
            ``image_encoder``, ``conditioning``, ``time_condition``, ``crop_p`` / ``crop_fraction`` (MinD-Vis:
            p 0.5, 205 / 256 = 0.8), ``trainable``, ``lr`` (5.3e-5), ``num_inference_steps`` (250), ``scheduler``
            (``pndm`` = PLMS), ``select``, ``linear_probe``, ``metrics``, ``seed``).
    """

    encoder_spec = FMRIEncoderSpec

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (100,),
        encoder: FMRIEncoderSpec = TINY_FMRI_ENCODER,
        encoder_checkpoint: str | None = None,
        clip_weight: float = 0.0,
        num_samples: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(brain_shape=brain_shape, encoder=encoder, encoder_checkpoint=encoder_checkpoint,
                         clip_weight=clip_weight, num_samples=num_samples, **kwargs)

    def build_encoder(self, encoder: dict) -> tuple[FMRIMAEConfig, nn.Module]:
        """The fMRI encoder on this subject's voxels (padded to whole patches inside)."""
        config = fmri_encoder_config(self.brain_shape, encoder)
        return config, FMRIEncoder(config)

    def load_encoder(self, path: str) -> None:
        """Load the encoder of a stage-2 or stage-1 checkpoint (keys ``mae.encoder.*``) into a fresh encoder, check
        the voxel count of a stage-2 one, then copy it in (a checkpoint that does not fit changes nothing)."""
        c, fresh = self.encoder_config, FMRIEncoder(self.encoder_config)
        hparams = load_by_prefix(fresh, path, ENCODER_PREFIX,
                                 f"a DC-MAE stage-2 or stage-1 fMRI encoder of width {c.embed_dim}, depth {c.depth} "
                                 "(model.encoder_checkpoint)", ignore_missing=("mask_token",),
                                 keep_if_resized=RESIZABLE)
        saved = tuple(int(s) for s in hparams.get("brain_shape", ()))
        if "image_mae" in hparams and saved != self.brain_shape:
            raise ValueError(f"model.encoder_checkpoint '{path}' is a stage-2 encoder of {saved[0] if saved else '?'} "
                             f"voxels, but this subject has {self.brain_shape[0]}: stage 2 is trained per subject; "
                             "use the stage-2 checkpoint of this subject and ROI (data.subject, data.roi)")
        self.encoder.load_state_dict(fresh.state_dict())
