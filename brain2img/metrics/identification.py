"""2-way identification on image features (MindEye ``two_way_identification`` protocol)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from brain2img.metrics._dedup import IdDeduplicatedMetric, check_ids


def _standardise_rows(x: Tensor) -> Tensor:
    """Centre each row and scale it to unit norm, so that ``a @ b.T`` is the Pearson correlation of rows."""
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True)


def two_way_scores(gt_feats: Tensor, rec_feats: Tensor, chunk_size: int = 1024) -> Tensor:
    """Per-reconstruction 2-way identification scores.

    ``r[i, j] = corr(gt_i, rec_j)``; reconstruction ``j`` scores the fraction of the other ``n - 1`` ground truths
    ``i`` with ``r[i, j] < r[j, j]``. A constant feature vector gives NaN correlations, which (as with
    ``np.corrcoef``) never compare as smaller, so they count as failures.

    Args:
        gt_feats: ``(N, D)`` ground-truth features.
        rec_feats: ``(N, D)`` reconstruction features, row ``j`` belonging to ground truth ``j``.
        chunk_size: reconstructions processed per block (bounds memory at ``N * chunk_size`` floats).

    Returns:
        ``(N,)`` float64 scores in ``[0, 1]``.
    """
    n = gt_feats.shape[0]
    if n < 2:
        raise ValueError(f"TwoWayIdentification needs at least 2 distinct samples, got {n}")
    gt = _standardise_rows(gt_feats.to(torch.float64))
    rec = _standardise_rows(rec_feats.to(torch.float64))
    counts = torch.empty(n, dtype=torch.float64, device=gt.device)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        r = gt @ rec[start:stop].T  # (n, b): r[i, j] for the block's reconstructions j
        cols = torch.arange(stop - start, device=gt.device)
        own = r[cols + start, cols]  # r[j, j]
        wins = r < own
        wins[cols + start, cols] = False  # i != j
        counts[start:stop] = wins.sum(dim=0).to(torch.float64)
    return counts / (n - 1)


class TwoWayIdentification(IdDeduplicatedMetric):
    """2-way identification accuracy of reconstructions from image features (chance 0.5).

    MindEye protocol (``src/Reconstruction_Metrics.py``): with ``r = corrcoef(F_gt, F_rec)[:n, n:]``, each
    reconstruction ``j`` is compared against every other ground truth ``i != j``; it wins when
    ``r[i, j] < r[j, j]``. The score of ``j`` is its number of wins over ``n - 1``; the value is the mean over ``j``.
    This differs from the Takagi/Osaka direction (rows = ground truth) and from the pixel-space "pair-wise" scores
    of MinD-Vis.

    Args:
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._add_row_states("gt_feats", "rec_feats")

    def update(self, gt_feats: Tensor, rec_feats: Tensor, ids: Tensor) -> None:
        """Add a batch.

        Args:
            gt_feats: ``(B, D...)`` features of the ground-truth images (flattened after the batch dimension).
            rec_feats: features of the reconstructions, same shape as ``gt_feats``.
            ids: ``(B,)`` integer sample ids.
        """
        if gt_feats.shape != rec_feats.shape or gt_feats.ndim < 2:
            raise ValueError(
                "TwoWayIdentification.update: `gt_feats` and `rec_feats` must have the same shape (B, D...), got "
                f"{tuple(gt_feats.shape)} and {tuple(rec_feats.shape)}"
            )
        ids = check_ids(ids, gt_feats.shape[0], "TwoWayIdentification")
        self._append_rows(ids, gt_feats=gt_feats.flatten(1).float(), rec_feats=rec_feats.flatten(1).float())

    def _scores(self) -> Tensor:
        _, rows = self._rows()
        return two_way_scores(rows["gt_feats"], rows["rec_feats"])

    def compute(self) -> Tensor:
        """Mean 2-way identification accuracy over the de-duplicated samples."""
        return self._scores().mean()

    def per_sample(self) -> Tensor:
        """Per-reconstruction scores, ordered by ascending sample id (see :meth:`sample_ids`)."""
        return self._synced(self._scores)
