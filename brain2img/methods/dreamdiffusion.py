"""DreamDiffusion (Bai et al. 2023): images from EEG through a pre-trained EEG encoder conditioning latent diffusion.

Stage A (:mod:`brain2img.methods.eeg_pretrain`) pre-trains the encoder by masked signal modelling. This module is
stage B: EEG ``(C, T)`` -> encoder tokens ``(L, D_enc)`` -> conditioning tokens for the UNet's cross-attention
(the reference's ``channel_mapper`` + ``dim_mapper``: 128 x 1024 -> 77 x 768 for SD 1.5) and, when the UNet has no
class embedding, a time condition added to the timestep embedding ("double conditioning"). The loss is the
backbone's denoising loss plus ``clip_weight`` x (1 - cos(mapping(tokens), image embedding)), the image embedding
coming from the encoder in the CLIP role (CLIP ViT-L/14 ``image_embeds`` in the paper; EfficientNet-Lite0 pooled
features offline). Generation samples from noise (PLMS/PNDM 250 steps, no guidance, 5 samples in the reference).

``conditioning="tokens"`` is the reference path. ``conditioning="embedding"`` instead feeds the CLIP-aligned
embedding through the backbone's own conditioner: the tiny simulated generator was trained on exactly that image
embedding, so with little data this path reuses what it learned (documented in experiments/dreamdiffusion).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from brain2img.augment import check_crop, random_crop_resize
from brain2img.data import schema
from brain2img.diffusion.candidates import best_of_k, sample_candidates
from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.token_maps import TokenMapper, TokenPooler, TokenTimeCondition
from brain2img.encoders.clip_image import build_image_encoder
from brain2img.encoders.mae1d import MAE1DConfig, SignalEncoder
from brain2img.methods.base import ReconstructionMethod, seeded_generator
from brain2img.methods.eeg_pretrain import ENCODER_PREFIX
from brain2img.methods.targets import StimulusCache
from brain2img.methods.trainable import select_trainable, unet_cross_attention
from brain2img.metrics.linear_probe import LinearProbeAccuracy, fit_probe_on
from brain2img.specs import (
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_METRICS,
    TINY_BACKBONE,
    TINY_EEG_ENCODER,
    BackboneSpec,
    EEGEncoderSpec,
    ImageEncoderSpec,
    MetricsSpec,
    eeg_encoder_config,
)
from brain2img.weights import load_by_prefix

CONDITIONING = ("tokens", "embedding")
SELECT = ("first", "best_clip")
PAPER_TRAINABLE = ("encoder", "conditioning", "clip_projection", "unet_cross_attention", "unet_time_condition")


def clip_alignment_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - mean cosine similarity``: 0 for parallel vectors, 1 for orthogonal, 2 for opposite."""
    return 1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1).mean()


class DreamDiffusion(ReconstructionMethod):
    """Fine-tune an EEG encoder to condition the shared latent-diffusion backbone (DreamDiffusion stage B).

    Args:
        brain_shape: ``(n_channels, n_times)`` (linked from the datamodule).
        backbone: :class:`~brain2img.specs.BackboneSpec` (:func:`~brain2img.diffusion.presets.build_backbone`
            settings: ``tiny_simulated`` offline, ``sd`` with a local SD 1.5 folder for the paper).
        encoder: :class:`~brain2img.specs.EEGEncoderSpec`: EEG encoder ``preset`` (``tiny`` / ``paper``) plus field
            overrides (channels and times from the data); must match the pre-trained one.
        encoder_checkpoint: a :class:`~brain2img.methods.eeg_pretrain.MaskedSignalPretraining` checkpoint to start
            from (``None``: random initialisation, the "no pre-training" ablation). Loaded when fitting starts.
        image_encoder: :class:`~brain2img.specs.ImageEncoderSpec`: encoder in the CLIP role: ``kind``
            (``efficientnet_lite0`` or ``hf_clip``) and ``path``.
        conditioning: ``tokens`` (reference) or ``embedding`` (through the backbone's conditioner).
        time_condition: add DreamDiffusion's token -> timestep-embedding condition when the UNet has none (a UNet
            with a ``projection`` class embedding, like the tiny generator's, already has one).
        clip_weight: weight of the CLIP alignment loss (reference 1; 0 = the "no CLIP" ablation).
        crop_p: training only: probability that a stimulus is randomly cropped and resized back before it is encoded
            to the diffusion latent (reference 0.5; the CLIP target sees the whole image). 0 turns it off.
        crop_fraction: side of that crop relative to the image (reference 410 / 512 = 0.8).
        trainable: parameter groups that train: ``encoder``, ``conditioning``, ``clip_projection``,
            ``unet_cross_attention`` (``attn2`` + ``norm2`` of every transformer block), ``unet_time_condition``,
            ``unet`` (all of it). Default: the paper's choice.
        lr: AdamW learning rate (reference 5.3e-5, constant).
        weight_decay: AdamW weight decay.
        guidance_scale: classifier-free guidance at sampling (reference 1 = none).
        num_inference_steps: sampling steps (reference 250).
        scheduler: ``pndm`` (PLMS, the reference) or ``ddim``.
        num_samples: images sampled per EEG input (reference 5).
        select: which sample is the reconstruction: ``first`` or ``best_clip`` (highest cosine between the
            sample's image embedding and the EEG's projected embedding: best-of-k).
        linear_probe: at test time, fit a logistic-regression probe on training-split encoder embeddings and report
            its class accuracy on the test split (``test/linear_probe_acc``).
        metrics: :class:`~brain2img.specs.MetricsSpec`: the test metrics' settings.
        seed: seed of the sampling noise.

    Each part may also be given as a dict of its fields; it is stored in the hyperparameters as plain data.
    """

    encoder_spec: ClassVar[type] = EEGEncoderSpec  #: the spec class of ``encoder`` (DC-MAE: the fMRI one)

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (32, 64),
        backbone: BackboneSpec = TINY_BACKBONE,
        encoder: EEGEncoderSpec = TINY_EEG_ENCODER,
        encoder_checkpoint: str | None = None,
        image_encoder: ImageEncoderSpec = DEFAULT_IMAGE_ENCODER,
        conditioning: str = "tokens",
        time_condition: bool = True,
        clip_weight: float = 1.0,
        crop_p: float = 0.5,
        crop_fraction: float = 0.8,
        trainable: tuple[str, ...] = PAPER_TRAINABLE,
        lr: float = 5.3e-5,
        weight_decay: float = 0.01,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 250,
        scheduler: str = "pndm",
        num_samples: int = 1,
        select: str = "first",
        linear_probe: bool = True,
        metrics: MetricsSpec = DEFAULT_METRICS,
        seed: int = 0,
    ) -> None:
        # plain data before save_hyperparameters: checkpoints hold no spec classes (torch.load(weights_only=True))
        backbone = BackboneSpec.coerce(backbone).to_dict()
        encoder = self.encoder_spec.coerce(encoder).to_dict()
        image_encoder = ImageEncoderSpec.coerce(image_encoder).to_dict()
        metrics = MetricsSpec.coerce(metrics).to_dict()
        super().__init__(brain_shape, metrics, seed)
        self.save_hyperparameters()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r} (model.conditioning)")
        check_crop(crop_p, crop_fraction)
        if select not in SELECT or num_samples < 1:
            raise ValueError(f"need select in {SELECT} and num_samples >= 1, got {select!r}, {num_samples}")
        self.backbone = build_backbone(**(backbone or {"preset": "tiny"}))
        self.image_encoder = build_image_encoder(**(image_encoder or {}))
        self.encoder_config, self.encoder = self.build_encoder(encoder)
        n_in, width = self.encoder_config.n_tokens, self.encoder_config.embed_dim
        n_tok, tok_dim = self.backbone.conditioner.n_tokens, self.backbone.conditioner.token_dim
        self.clip_projection = TokenPooler(n_in, width, self.image_encoder.embed_dim)
        self.cond_stage = TokenMapper(n_in, width, n_tok, tok_dim) if conditioning == "tokens" else None
        if conditioning == "embedding" and self.backbone.condition_dim != self.image_encoder.embed_dim:
            raise ValueError(f"conditioning='embedding' needs the backbone's condition size "
                             f"({self.backbone.condition_dim}) to equal the image embedding size "
                             f"({self.image_encoder.embed_dim}); use conditioning='tokens' with this backbone")
        unet = self.backbone.unet
        if time_condition and unet.class_embedding is None:
            unet.class_embedding = TokenTimeCondition(n_tok, tok_dim, unet.time_embedding.linear_2.out_features)
        self.n_trainable = select_trainable(self, self._groups(), list(trainable))
        self._clip_cache = StimulusCache(self._clip_target)
        self.probe_metric: LinearProbeAccuracy | None = None

    def _groups(self) -> dict[str, list[nn.Module]]:
        unet = self.backbone.unet
        time_cond = [unet.class_embedding] if unet.class_embedding is not None else []
        conditioning = self.cond_stage if self.cond_stage is not None else self.backbone.conditioner
        return {"encoder": [self.encoder], "conditioning": [conditioning],
                "clip_projection": [self.clip_projection], "unet_cross_attention": unet_cross_attention(unet),
                "unet_time_condition": time_cond, "unet": [unet]}

    def setup(self, stage: str) -> None:
        """Before fitting from scratch: prepare the generator (``tiny_simulated``) and load the pre-trained encoder."""
        if stage != "fit" or self.trainer is None or self.trainer.ckpt_path is not None:
            return
        if self.prepare_generator():
            select_trainable(self, self._groups(), list(self.hparams.trainable))  # prepare froze the backbone
        if self.hparams.encoder_checkpoint:
            self.load_encoder(self.hparams.encoder_checkpoint)

    def build_encoder(self, encoder: dict) -> tuple[MAE1DConfig, nn.Module]:
        """The brain encoder and its config: the EEG :class:`~brain2img.encoders.mae1d.SignalEncoder`."""
        config = eeg_encoder_config(self.brain_shape, encoder)
        return config, SignalEncoder(config)

    def load_encoder(self, path: str) -> None:
        """Load the pre-trained encoder of a :class:`~brain2img.methods.eeg_pretrain.MaskedSignalPretraining`
        checkpoint; loaded into a fresh encoder, then copied: a checkpoint that does not fit changes nothing."""
        c, pretrained = self.encoder_config, SignalEncoder(self.encoder_config)
        load_by_prefix(pretrained, path, ENCODER_PREFIX,
                       f"a pre-trained EEG encoder (MaskedSignalPretraining) for {c.n_channels} channels x "
                       f"{c.n_times} times, width {c.embed_dim}, depth {c.depth} (model.encoder_checkpoint)",
                       ignore_missing=("mask_token",))  # the encoder's unused reference mask token
        self.encoder.load_state_dict(pretrained.state_dict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW over the trainable groups, constant learning rate (the reference)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def train(self, mode: bool = True) -> DreamDiffusion:
        """Frozen parts (VAE, image encoder) stay in eval mode."""
        super().train(mode)
        self.backbone.vae.eval()
        self.image_encoder.eval()
        return self

    def encode_brain(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """EEG -> encoder tokens ``(B, L, D_enc)``."""
        brain = batch[schema.BRAIN]
        self.check_brain(brain)
        return self.encoder(brain)

    def condition_tokens(self, hidden: torch.Tensor, clip_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder tokens -> UNet cross-attention tokens ``(B, n_tokens, token_dim)``."""
        if self.cond_stage is not None:
            return self.cond_stage(hidden)
        return self.backbone.condition(self.clip_projection(hidden) if clip_emb is None else clip_emb)

    def image_embedding(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """CLIP-role embedding of the stimuli, cached by stimulus id (each image is encoded once per run)."""
        return self._clip_cache(batch)[0]

    def _clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)["pooled"].float()

    def _clip_target(self, images: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor]:
        return (self._clip_embed(images),)

    def losses(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """Denoising loss, CLIP alignment loss and their weighted sum, plus the embeddings for retrieval."""
        hidden = self.encode_brain(batch)
        clip_pred = self.clip_projection(hidden)
        target = self.image_embedding(batch)
        images = batch[schema.IMAGE]
        if self.training:
            images = random_crop_resize(images, self.hparams.crop_p, self.hparams.crop_fraction, generator)
        with torch.no_grad():
            latents = self.backbone.encode_images(images)
        tokens = self.condition_tokens(hidden, clip_pred)
        diffusion = self.backbone.denoising_loss(latents, tokens, generator=generator)
        clip = clip_alignment_loss(clip_pred, target)
        return {"loss": diffusion + self.hparams.clip_weight * clip, "diffusion": diffusion, "clip": clip,
                "brain_emb": clip_pred.detach(), "image_emb": target}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on the summed loss."""
        out = self.losses(batch)
        bs = len(batch[schema.BRAIN])
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({"train/loss_diffusion": out["diffusion"], "train/loss_clip": out["clip"]}, batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Losses with noise seeded by the batch index (comparable across epochs) and embeddings for retrieval."""
        gen = seeded_generator(self.device, self.seed, batch_idx)
        out = self.losses(batch, generator=gen)
        bs = len(batch[schema.BRAIN])
        self.log_dict({"val/loss": out["loss"], "val/loss_diffusion": out["diffusion"], "val/loss_clip": out["clip"]},
                      batch_size=bs, sync_dist=True)
        self.collect_val_embeddings(out["brain_emb"], out["image_emb"])

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Brain embedding = the CLIP projection of the EEG; image embedding = the CLIP-role embedding."""
        return self.clip_projection(self.encode_brain(batch)).float(), self.image_embedding(batch)

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Sample ``num_samples`` images per EEG from noise; keep the first or the best by CLIP similarity."""
        hidden = self.encode_brain(batch)
        clip_pred = self.clip_projection(hidden)
        tokens = self.condition_tokens(hidden, clip_pred)
        samples = sample_candidates(self.backbone, tokens, self.hparams.num_samples,
                                    guidance_scale=self.hparams.guidance_scale,
                                    num_inference_steps=self.hparams.num_inference_steps,
                                    scheduler=self.hparams.scheduler, generator=generator)
        if self.hparams.select == "first":
            return samples[0]
        return best_of_k(samples, self._clip_embed, clip_pred)

    @torch.no_grad()
    def _pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_brain(batch).mean(dim=1).float()

    def on_test_epoch_start(self) -> None:
        """Create the metrics; fit the linear probe on training-split embeddings when asked and possible."""
        super().on_test_epoch_start()
        self.probe_metric = None
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not self.hparams.linear_probe or datamodule is None or not hasattr(datamodule, "dataset"):
            return
        probe = fit_probe_on(datamodule.dataset("train", "single"), self._pooled, self.device)
        self.probe_metric = LinearProbeAccuracy(probe).to(self.device)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Shared reconstruction metrics, plus the linear probe's predictions."""
        out = super().test_step(batch, batch_idx)
        if self.probe_metric is not None:
            self.probe_metric.update(self._pooled(batch), batch[schema.LABEL], batch[schema.INDEX])
        return out

    def on_test_epoch_end(self) -> None:
        """Log the shared metrics and ``test/linear_probe_acc``."""
        super().on_test_epoch_end()
        if self.probe_metric is not None:
            self.log("test/linear_probe_acc", float(self.probe_metric.compute()), rank_zero_only=False)
            self.probe_metric = None
