"""n-way top-k semantic classification accuracy (MinD-Vis / DC-MAE / DreamDiffusion ``n_way_top_k_acc``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import hypergeom
from torch import Tensor

from brain2img.metrics._dedup import IdDeduplicatedMetric, check_ids


class NWayTopKAccuracy(IdDeduplicatedMetric):
    """n-way top-k accuracy of an ImageNet classifier on reconstructions, with the GT image's pseudo-label.

    Protocol (``eval_metrics.py`` of MinD-Vis, DC-MAE and DreamDiffusion): the class of a sample is
    ``argmax(gt_logits)`` (the classifier's prediction on the ground-truth image, not the dataset label). Each trial
    draws ``n_way - 1`` distinct other classes uniformly; the trial is correct when the reconstruction's probability
    for the GT class is among the ``top_k`` largest of the ``n_way`` candidates. A sample scores the mean over its
    trials; the value is the mean over samples. Chance = ``top_k / n_way``.

    Implementation: a trial is decided only by how many drawn distractors the classifier ranks above the GT class.
    With ``m`` of the ``C - 1`` other classes ranked above it, that count is hypergeometric
    ``(C - 1, m, n_way - 1)``, so it is drawn directly from that law: the same distribution as drawing the classes,
    at a fraction of the cost. Draws come from a NumPy generator seeded with ``(seed, sample id)``, so the value does
    not depend on batch order or DDP partition. ``num_trials=None`` gives the exact expectation (infinitely many
    trials). Ties with the GT class count in its favour (the published code leaves them to ``topk``).
    The ranking uses logits, which order classes as the softmax probabilities do.

    Args:
        n_way: candidates per trial (50 in all three papers).
        top_k: a trial is correct if the GT class ranks within the top ``top_k`` candidates.
        num_trials: trials per sample (50 in training-time validation, 1000 in ``gen_eval.py``); ``None``: exact.
        seed: seeds the per-sample draws together with the sample id.
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self, n_way: int = 50, top_k: int = 1, num_trials: int | None = 50, seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if n_way < 2:
            raise ValueError(f"NWayTopKAccuracy: `n_way` must be >= 2, got {n_way}")
        if not 1 <= top_k <= n_way:
            raise ValueError(f"NWayTopKAccuracy: `top_k` must be in [1, n_way={n_way}], got {top_k}")
        if num_trials is not None and num_trials < 1:
            raise ValueError(f"NWayTopKAccuracy: `num_trials` must be >= 1 or None (exact), got {num_trials}")
        if seed < 0:
            raise ValueError(f"NWayTopKAccuracy: `seed` must be >= 0, got {seed}")
        self.n_way = n_way
        self.top_k = top_k
        self.num_trials = num_trials
        self.seed = seed
        self._add_row_states("scores")

    def update(self, pred_logits: Tensor, gt_logits: Tensor, ids: Tensor) -> None:
        """Score a batch.

        Args:
            pred_logits: ``(B, C)`` classifier logits (or probabilities) on the reconstructions.
            gt_logits: ``(B, C)`` classifier logits on the ground-truth images (their argmax is the label).
            ids: ``(B,)`` non-negative integer sample ids.
        """
        if pred_logits.ndim != 2 or pred_logits.shape != gt_logits.shape:
            raise ValueError(
                "NWayTopKAccuracy.update: `pred_logits` and `gt_logits` must both have shape (B, C), got "
                f"{tuple(pred_logits.shape)} and {tuple(gt_logits.shape)}"
            )
        num_classes = pred_logits.shape[1]
        if num_classes < self.n_way:
            raise ValueError(f"NWayTopKAccuracy.update: {num_classes} classes is fewer than n_way={self.n_way}")
        ids = check_ids(ids, pred_logits.shape[0], "NWayTopKAccuracy")
        if (ids < 0).any():
            raise ValueError("NWayTopKAccuracy.update: `ids` must be non-negative (they seed the per-sample draws)")
        gt_class = gt_logits.argmax(dim=1, keepdim=True)
        gt_score = pred_logits.gather(1, gt_class)
        num_above = (pred_logits > gt_score).sum(dim=1).cpu().tolist()
        scores = [self._score(int(i), int(m), num_classes) for i, m in zip(ids.cpu().tolist(), num_above, strict=True)]
        self._append_rows(ids, scores=torch.tensor(scores, dtype=torch.float64, device=pred_logits.device))

    def _score(self, sample_id: int, num_above: int, num_classes: int) -> float:
        """Fraction of trials where fewer than ``top_k`` drawn distractors outrank the GT class."""
        others, drawn = num_classes - 1, self.n_way - 1
        if self.num_trials is None:
            return float(hypergeom.cdf(self.top_k - 1, others, num_above, drawn))
        rng = np.random.default_rng([self.seed, sample_id])
        above = rng.hypergeometric(num_above, others - num_above, drawn, size=self.num_trials)
        return float((above < self.top_k).mean())

    def compute(self) -> Tensor:
        """Mean n-way top-k accuracy over the de-duplicated samples."""
        return self._rows()[1]["scores"].mean()

    def per_sample(self) -> Tensor:
        """Per-sample accuracies (mean over trials), ordered by ascending sample id (see :meth:`sample_ids`)."""
        return self._synced(lambda: self._rows()[1]["scores"])
