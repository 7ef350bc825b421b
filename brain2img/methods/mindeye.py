"""MindEye (Scotti et al., NeurIPS 2023): voxels -> CLIP image tokens (contrastive + diffusion prior) and -> VAE
latent (low-level branch), then img2img with the shared backbone.

Training, per batch: the :class:`~brain2img.encoders.mindeye.BrainNetwork` maps voxels to backbone tokens and
projector tokens; the projector tokens are trained contrastively against the CLS-normalised image tokens (BiMixCo
for the first ``mixup_pct`` of the epochs, SoftCLIP with its temperature schedule afterwards, negatives gathered
from every DDP rank); the diffusion prior learns to produce the image tokens from the backbone tokens (weight
``prior_weight``, 30 in the reference); the optional low-level branch regresses the VAE latent of the image (L1).
OneCycle learning rate as the reference. Reconstruction: prior sample -> the image tokens (or token 0, for a
backbone conditioned on one embedding) condition the backbone ->
img2img from the low-level latent (strength 0.85), best of ``num_samples`` by similarity between the candidate's
image tokens and the projector output.

On the simulated benchmark the image tokens come from the offline EfficientNet-Lite0 (pooled feature + pooled
feature map), whose token 0 is exactly what the tiny generator is conditioned on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from brain2img.data import schema
from brain2img.diffusion.candidates import best_of_k, sample_candidates
from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.prior import DiffusionPrior
from brain2img.encoders.image_tokens import EfficientNetTokens, build_token_encoder, cls_normalize
from brain2img.encoders.mindeye import BrainNetwork, LowLevelBranch
from brain2img.losses import mixco, mixco_nce, soft_clip_loss
from brain2img.methods.base import ReconstructionMethod
from brain2img.methods.targets import StimulusCache
from brain2img.optim import decay_groups
from brain2img.schedules import bimixco_epochs, make_onecycle, softclip_temperatures
from brain2img.specs import (
    DEFAULT_METRICS,
    DEFAULT_TOKEN_ENCODER,
    NO_LOW_LEVEL,
    NO_PRIOR,
    TINY_BACKBONE,
    TINY_NETWORK,
    BackboneSpec,
    LowLevelSpec,
    MetricsSpec,
    NetworkSpec,
    PriorSpec,
    TokenEncoderSpec,
)


class MindEye(ReconstructionMethod):
    """MindEye1 on the shared backbone (see the module docstring).

    Args:
        brain_shape: ``(n_voxels,)`` (linked from the datamodule).
        backbone: :class:`~brain2img.specs.BackboneSpec` (:func:`~brain2img.diffusion.presets.build_backbone`
            settings). Its condition is either all image tokens (``T x D`` values: Versatile Diffusion's image UNet,
            ``sd`` preset with ``n_tokens: 257``) or token 0 (``D`` values: ``tiny_simulated``, conditioned on the
            1280-d EfficientNet feature).
        network: :class:`~brain2img.specs.NetworkSpec`: ``BrainNetwork`` ``preset`` (``paper`` / ``tiny``) plus
            overrides; voxels, tokens and width are taken from the data and the image encoder.
        prior: :class:`~brain2img.specs.PriorSpec`: ``DiffusionPrior`` ``preset`` plus overrides (``dim`` /
            ``num_tokens`` from the image encoder); ``preset: null`` (the default; ``None`` from Python) trains no
            prior (reconstruction then conditions on the projector's token 0).
        low_level: :class:`~brain2img.specs.LowLevelSpec`: ``LowLevelBranch`` ``preset`` plus overrides (latent
            shape from the backbone); ``preset: null`` (the default; ``None`` from Python): no low-level branch
            (reconstruction from noise).
        image_encoder: :class:`~brain2img.specs.TokenEncoderSpec`: token targets: ``kind`` (``efficientnet_lite0``
            / ``hf_clip``), ``path``, ``grid``.
        max_lr: OneCycle peak learning rate (3e-4).
        weight_decay: AdamW weight decay except biases and norms (1e-2).
        pct_start: OneCycle warm-up share (2/240).
        final_div_factor: OneCycle final division (1000).
        mixup_pct: share of epochs with BiMixCo (0.33).
        bimixco_temp: BiMixCo temperature (0.006).
        softclip_start: SoftCLIP temperature at its first epoch (0.004).
        softclip_end: SoftCLIP temperature at the last epoch (0.0075).
        prior_weight: weight of the prior loss (30).
        low_level_weight: weight of the low-level L1 loss.
        gather: gather contrastive negatives across DDP ranks.
        strength: img2img strength from the low-level latent (0.85).
        guidance_scale: classifier-free guidance of the backbone.
        num_inference_steps: backbone sampling steps.
        scheduler: backbone sampler (``ddim``, ``pndm``, ``unipc``; the reference: UniPC, 20 steps).
        prior_steps: prior sampling steps (``None``: all of its timesteps).
        num_samples: candidates per input; the best by image-token similarity is kept (reference 16).
        metrics: :class:`~brain2img.specs.MetricsSpec`: the test metrics' settings.
        seed: seed of the sampling noise.

    Each part may also be given as a dict of its fields; it is stored in the hyperparameters as plain data.
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (1,),
        backbone: BackboneSpec = TINY_BACKBONE,
        network: NetworkSpec = TINY_NETWORK,
        prior: PriorSpec = NO_PRIOR,
        low_level: LowLevelSpec = NO_LOW_LEVEL,
        image_encoder: TokenEncoderSpec = DEFAULT_TOKEN_ENCODER,
        max_lr: float = 3e-4,
        weight_decay: float = 1e-2,
        pct_start: float = 2 / 240,
        final_div_factor: float = 1000.0,
        mixup_pct: float = 0.33,
        bimixco_temp: float = 0.006,
        softclip_start: float = 0.004,
        softclip_end: float = 0.0075,
        prior_weight: float = 30.0,
        low_level_weight: float = 1.0,
        gather: bool = True,
        strength: float = 0.85,
        guidance_scale: float = 3.0,
        num_inference_steps: int = 25,
        scheduler: str = "ddim",
        prior_steps: int | None = None,
        num_samples: int = 1,
        metrics: MetricsSpec = DEFAULT_METRICS,
        seed: int = 0,
    ) -> None:
        # plain data before save_hyperparameters: checkpoints hold no spec classes (torch.load(weights_only=True))
        net_spec = NetworkSpec.coerce(network)
        prior_spec = PriorSpec.coerce(prior)
        low_spec = LowLevelSpec.coerce(low_level)
        network, prior, low_level = net_spec.to_dict(), prior_spec.to_dict(), low_spec.to_dict()
        backbone = BackboneSpec.coerce(backbone).to_dict()
        image_encoder = TokenEncoderSpec.coerce(image_encoder).to_dict()
        metrics = MetricsSpec.coerce(metrics).to_dict()
        super().__init__(brain_shape, metrics, seed)
        self.save_hyperparameters()
        if len(self.brain_shape) != 1:
            raise ValueError(f"MindEye needs voxel vectors, brain_shape (n_voxels,), got {self.brain_shape}")
        n_vox = self.brain_shape[0]
        self.backbone = build_backbone(**(backbone or {"preset": "tiny"}))
        self.token_encoder = build_token_encoder(**(image_encoder or {}))
        if isinstance(self.token_encoder, EfficientNetTokens):
            self.image_encoder = self.token_encoder.features  # shared with the metrics and the generator's prepare
        tokens, dim = self.token_encoder.num_tokens, self.token_encoder.dim
        if self.backbone.condition_dim == tokens * dim:
            self.condition_on = "tokens"  # Versatile-Diffusion style: all (T, D) image tokens as context
        elif self.backbone.condition_dim == dim:
            self.condition_on = "token0"  # an image-embedding backbone (e.g. the tiny simulated generator)
        else:
            raise ValueError(f"MindEye conditions the backbone on the image tokens ({tokens} x {dim} values) or on "
                             f"token 0 ({dim} values), but the backbone expects {self.backbone.condition_dim} "
                             "(model.backbone n_tokens x cross_attention_dim / model.image_encoder)")
        self.network = BrainNetwork.from_config(net_spec.config(n_voxels=n_vox, clip_tokens=tokens, clip_dim=dim))
        self.prior = None
        if prior_spec.enabled:
            self.prior = DiffusionPrior.from_config(prior_spec.config(dim=dim, num_tokens=tokens))
        self.low_level = None
        if low_spec.enabled:
            self.low_level = LowLevelBranch.from_config(
                low_spec.config(n_voxels=n_vox, latent_shape=self.backbone.latent_shape))
        self.backbone.requires_grad_(False)
        self.token_encoder.requires_grad_(False)
        self._targets = StimulusCache(self._compute_targets)

    # ------------------------------------------------------------------ set-up
    def setup(self, stage: str) -> None:
        """Before fitting from scratch: train or load the generator (``tiny_simulated``)."""
        if stage == "fit":
            self.prepare_generator()

    def train(self, mode: bool = True) -> MindEye:
        """Frozen parts (backbone, image encoder) stay in eval mode."""
        super().train(mode)
        self.backbone.eval()
        self.token_encoder.eval()
        return self

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on biases and norms) with the reference OneCycle schedule, stepped every batch."""
        groups = decay_groups(((n, p) for n, p in self.named_parameters() if p.requires_grad),
                              self.hparams.weight_decay)
        opt = torch.optim.AdamW(groups, lr=self.hparams.max_lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = make_onecycle(opt, max_lr=self.hparams.max_lr, total_steps=total, pct_start=self.hparams.pct_start,
                              final_div_factor=self.hparams.final_div_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ pieces
    def _voxels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_brain(batch[schema.BRAIN])
        return batch[schema.BRAIN].flatten(1)

    def targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens ``(B, T, D)`` and VAE latents ``(B, C, h, w)`` of the stimuli, cached by stimulus id."""
        return self._targets(batch)

    def _compute_targets(self, images: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.token_encoder(images).float(), self.backbone.encode_images(images).float()

    def _epoch_loss(self, backbone_tokens: torch.Tensor, proj: torch.Tensor, target: torch.Tensor,
                    mix: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if mix is not None:
            perm, betas, select = mix
            return mixco_nce(proj.flatten(1), target.flatten(1), self.hparams.bimixco_temp, perm, betas, select,
                             gather=self.hparams.gather)
        return soft_clip_loss(proj.flatten(1), target.flatten(1), self._softclip_temp(), gather=self.hparams.gather)

    def _softclip_temp(self) -> float:
        epochs = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 1
        temps = softclip_temperatures(epochs, self.hparams.mixup_pct, self.hparams.softclip_start,
                                      self.hparams.softclip_end)
        if len(temps) == 0:
            return self.hparams.softclip_end
        k = self.current_epoch - bimixco_epochs(epochs, self.hparams.mixup_pct) if self._trainer is not None else -1
        return float(temps[min(max(k, 0), len(temps) - 1)] if k >= 0 else temps[-1])

    def _in_bimixco(self) -> bool:
        if self._trainer is None or not self.training:
            return False
        return self.current_epoch < bimixco_epochs(max(1, int(self.trainer.max_epochs or 1)), self.hparams.mixup_pct)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Contrastive (BiMixCo or SoftCLIP), prior and low-level losses and their weighted sum."""
        x = self._voxels(batch)
        target, latent = self.targets(batch)
        mix = None
        x_in = x
        if self._in_bimixco():
            x_in, perm, betas, select = mixco(x)
            mix = (perm, betas, select)
        backbone_tokens, proj = self.network(x_in)
        out = {"contrastive": self._epoch_loss(backbone_tokens, proj, target, mix)}
        total = out["contrastive"]
        if self.prior is not None:
            out["prior"] = self.prior(backbone_tokens, target)
            total = total + self.hparams.prior_weight * out["prior"]
        if self.low_level is not None:
            out["low_level"] = F.l1_loss(self.low_level(x), latent)
            total = total + self.hparams.low_level_weight * out["low_level"]
        out["loss"] = total
        out["brain_emb"], out["image_emb"] = proj.detach().flatten(1), target.flatten(1)
        return out

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on the summed loss."""
        out = self.losses(batch)
        bs = len(batch[schema.BRAIN])
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({f"train/loss_{k}": out[k] for k in ("contrastive", "prior", "low_level") if k in out},
                      batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation losses (SoftCLIP at the current temperature) and embeddings for retrieval."""
        out = self.losses(batch)
        bs = len(batch[schema.BRAIN])
        self.log_dict({f"val/loss_{k}": out[k] for k in ("contrastive", "prior", "low_level") if k in out},
                      batch_size=bs, sync_dist=True)
        self.collect_val_embeddings(out["brain_emb"], out["image_emb"])

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Brain embedding = projector tokens (flattened); image embedding = the image tokens (flattened)."""
        _, proj = self.network(self._voxels(batch))
        target, _ = self.targets(batch)
        return proj.flatten(1).float(), target.flatten(1).float()

    @torch.no_grad()
    def reconstruct(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Prior sample -> image tokens (or token 0) condition the backbone -> img2img from the low-level latent;
        best of k."""
        x = self._voxels(batch)
        backbone_tokens, proj = self.network(x)
        if self.prior is not None:
            image_tokens = self.prior.sample(backbone_tokens, num_steps=self.hparams.prior_steps, generator=generator)
        else:
            image_tokens = proj
        image_tokens = cls_normalize(image_tokens.float())  # as the reference, each sample by its own CLS norm
        cond = self.backbone.condition(image_tokens if self.condition_on == "tokens" else image_tokens[:, 0])
        init = self.low_level(x).float() if self.low_level is not None else None
        candidates = sample_candidates(self.backbone, cond, self.hparams.num_samples,
                                       guidance_scale=self.hparams.guidance_scale, scheduler=self.hparams.scheduler,
                                       generator=generator, init_latents=init,
                                       num_inference_steps=self.hparams.num_inference_steps,
                                       strength=self.hparams.strength)
        return best_of_k(candidates, self.token_encoder, proj)
