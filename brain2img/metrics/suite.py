"""All reconstruction metrics behind one ``update`` / ``compute`` (n-way, 2-way, PixCorr, SSIM, retrieval)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from brain2img.metrics.bootstrap import bootstrap_ci
from brain2img.metrics.identification import TwoWayIdentification
from brain2img.metrics.image_similarity import SSIM, PixCorr
from brain2img.metrics.nway import NWayTopKAccuracy
from brain2img.metrics.retrieval import RetrievalTopK

FEATURE_KEYS = ("pooled", "logits")


class ReconstructionMetrics(nn.Module):
    """Evaluate reconstructions against ground-truth images (and optionally brain vs image embeddings).

    ``update`` runs the feature net (no grad) on both image sets and feeds: n-way top-k on its ``logits``, 2-way
    identification on its ``pooled`` features, PixCorr and SSIM on the pixels and, when embeddings are given,
    retrieval. All metrics de-duplicate by sample id, so DDP padding does not count twice.

    Keys of :meth:`compute`: ``nway_top{top_k}``, ``two_way``, ``pixcorr``, ``ssim``, ``retrieval_brain_to_image``,
    ``retrieval_image_to_brain``, ``retrieval_all_brain_to_image`` / ``retrieval_all_image_to_brain`` (every test
    sample a candidate at once, e.g. 982-way), and the same two subset values under MindEye's published names
    ``image_retrieval`` (= ``retrieval_image_to_brain``: each image ranks the brain embeddings, the reference code's
    "fwd") and ``brain_retrieval`` (= ``retrieval_brain_to_image``, the code's "bwd"; see :class:`RetrievalTopK`).
    Metrics that received no data are left out.

    Args:
        feature_net: module mapping ``(B, 3, H, W)`` images in ``[0, 1]`` to a dict with ``pooled`` ``(B, D)`` and
            ``logits`` ``(B, C)``; ``None`` builds the frozen ImageNet ``EfficientNetLite0Features``. It is kept in
            eval mode.
        n_way: candidates per n-way trial.
        top_k: n-way top-k.
        num_trials: n-way trials per sample (``None``: exact expectation).
        retrieval_batch_size: retrieval subset size.
        retrieval_num_repeats: number of retrieval subsets.
        retrieval_top_k: retrieval top-k.
        resize: side length for PixCorr / SSIM (``None``: no resize).
        seed: seed of the n-way draws and of the bootstrap.
        retrieval_seed: seed of the retrieval subsets.
        n_boot: bootstrap resamples for confidence intervals.
        ci_alpha: 1 - confidence level of the intervals.
        feature_batch_size: images per feature-net forward pass.
    """

    def __init__(
        self,
        feature_net: nn.Module | None = None,
        n_way: int = 50,
        top_k: int = 1,
        num_trials: int | None = 50,
        retrieval_batch_size: int = 300,
        retrieval_num_repeats: int = 30,
        retrieval_top_k: int = 1,
        resize: int | None = 425,
        seed: int = 0,
        retrieval_seed: int = 42,
        n_boot: int = 1000,
        ci_alpha: float = 0.05,
        feature_batch_size: int = 64,
    ) -> None:
        super().__init__()
        if feature_net is None:
            from brain2img.encoders.image_features import EfficientNetLite0Features

            feature_net = EfficientNetLite0Features()
        if feature_batch_size < 1:
            raise ValueError(f"ReconstructionMetrics: `feature_batch_size` must be >= 1, got {feature_batch_size}")
        self.feature_net = feature_net.eval()
        self.nway = NWayTopKAccuracy(n_way=n_way, top_k=top_k, num_trials=num_trials, seed=seed)
        self.two_way = TwoWayIdentification()
        self.pixcorr = PixCorr(resize=resize)
        self.ssim = SSIM(resize=resize)
        self.retrieval = RetrievalTopK(
            batch_size=retrieval_batch_size,
            num_repeats=retrieval_num_repeats,
            top_k=retrieval_top_k,
            seed=retrieval_seed,
        )
        self.seed = seed
        self.n_boot = n_boot
        self.ci_alpha = ci_alpha
        self.feature_batch_size = feature_batch_size

    def train(self, mode: bool = True) -> ReconstructionMetrics:
        """Set the mode of the metrics; the feature net always stays in eval mode."""
        super().train(mode)
        self.feature_net.eval()
        return self

    @torch.no_grad()
    def features(self, images: Tensor) -> dict[str, Tensor]:
        """``pooled`` and ``logits`` of the feature net for ``(B, 3, H, W)`` images, in batches, without grad."""
        out: dict[str, list[Tensor]] = {k: [] for k in FEATURE_KEYS}
        for chunk in images.split(self.feature_batch_size):
            res = self.feature_net(chunk)
            if not isinstance(res, dict) or any(k not in res for k in FEATURE_KEYS):
                got = sorted(res) if isinstance(res, dict) else type(res).__name__
                raise KeyError(f"ReconstructionMetrics: feature_net must return a dict with {FEATURE_KEYS}, got {got}")
            for k in FEATURE_KEYS:
                out[k].append(res[k].float())
        return {k: torch.cat(v) for k, v in out.items()}

    @torch.no_grad()
    def update(
        self,
        gt_images: Tensor,
        rec_images: Tensor,
        ids: Tensor,
        brain_emb: Tensor | None = None,
        image_emb: Tensor | None = None,
    ) -> None:
        """Add a batch.

        Args:
            gt_images: ``(B, 3, H, W)`` ground-truth images in ``[0, 1]``.
            rec_images: ``(B, 3, H', W')`` reconstructions in ``[0, 1]``.
            ids: ``(B,)`` integer sample ids (e.g. the dataset index or stimulus id of each sample).
            brain_emb: optional ``(B, D)`` brain-predicted embeddings for retrieval (needs ``image_emb``).
            image_emb: optional ``(B, D)`` image embeddings for retrieval (needs ``brain_emb``).
        """
        if (brain_emb is None) != (image_emb is None):
            raise ValueError("ReconstructionMetrics.update: pass both `brain_emb` and `image_emb` (retrieval) or none")
        self.pixcorr.update(gt_images, rec_images, ids)  # validates shapes, range and ids first
        self.ssim.update(gt_images, rec_images, ids)
        gt_feats, rec_feats = self.features(gt_images), self.features(rec_images)
        self.nway.update(rec_feats["logits"], gt_feats["logits"], ids)
        self.two_way.update(gt_feats["pooled"], rec_feats["pooled"], ids)
        if brain_emb is not None and image_emb is not None:
            self.retrieval.update(brain_emb, image_emb, ids)

    def _scalar_metrics(self) -> dict[str, NWayTopKAccuracy | TwoWayIdentification | PixCorr | SSIM]:
        return {
            f"nway_top{self.nway.top_k}": self.nway,
            "two_way": self.two_way,
            "pixcorr": self.pixcorr,
            "ssim": self.ssim,
        }

    def compute(self, with_ci: bool = False) -> dict[str, float]:
        """All metrics that received data, as floats; ``with_ci`` adds ``<key>_ci_low`` / ``<key>_ci_high``.

        Intervals are percentile bootstraps over the per-sample scores (retrieval: per-query hit rates, queries never
        drawn in a subset excluded).
        """
        values: dict[str, float] = {}
        per_sample: dict[str, Tensor] = {}
        for key, metric in self._scalar_metrics().items():
            if metric.update_count == 0:
                continue
            values[key] = float(metric.compute())
            if with_ci:
                per_sample[key] = metric.per_sample()
        if self.retrieval.update_count > 0:
            for direction, value in self.retrieval.compute().items():
                values[f"retrieval_{direction}"] = float(value)
            for direction, value in self.retrieval.compute_all().items():
                values[f"retrieval_all_{direction}"] = float(value)
            values["image_retrieval"] = values["retrieval_image_to_brain"]  # MindEye's published names (see above)
            values["brain_retrieval"] = values["retrieval_brain_to_image"]
            if with_ci:
                for direction, scores in self.retrieval.per_sample().items():
                    per_sample[f"retrieval_{direction}"] = scores[~torch.isnan(scores)]
        for key, scores in per_sample.items():
            low, high = bootstrap_ci(scores, n_boot=self.n_boot, alpha=self.ci_alpha, seed=self.seed)
            values[f"{key}_ci_low"], values[f"{key}_ci_high"] = low, high
        return values

    def reset(self) -> None:
        """Clear the accumulated data of every metric."""
        for metric in (*self._scalar_metrics().values(), self.retrieval):
            metric.reset()
