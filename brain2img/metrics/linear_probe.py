"""Linear-probe accuracy: how well a frozen brain embedding separates the stimulus classes (e.g. EEG-ImageNet's 40).

A multinomial logistic regression (scikit-learn, on standardised features) is fitted on training-split embeddings
(:func:`fit_linear_probe`); :class:`LinearProbeAccuracy` then collects test embeddings, de-duplicated by sample id
under DDP, and scores the probe's top-1 accuracy on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from brain2img.metrics._dedup import IdDeduplicatedMetric, check_ids


def fit_linear_probe(embeddings: np.ndarray, labels: np.ndarray, c: float = 1.0, max_iter: int = 2000) -> Pipeline:
    """Fit standardisation + multinomial logistic regression (L2, inverse strength ``c``) on embeddings.

    Raises:
        ValueError: fewer than two classes, or unlabelled samples (label < 0).
    """
    labels = np.asarray(labels)
    if (labels < 0).any():
        raise ValueError("linear probe: some training samples have no class label (label -1); the dataset has no "
                         "classes to probe (set model.linear_probe false)")
    if len(np.unique(labels)) < 2:
        raise ValueError(f"linear probe needs at least 2 classes in the training split, got {np.unique(labels)}")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    return probe.fit(np.asarray(embeddings, dtype=np.float64), labels)


class LinearProbeAccuracy(IdDeduplicatedMetric):
    """Top-1 accuracy of a fitted probe on the collected embeddings.

    Args:
        probe: a fitted scikit-learn classifier (:func:`fit_linear_probe`).
        kwargs: passed to :class:`torchmetrics.Metric`.
    """

    def __init__(self, probe: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probe = probe
        self._add_row_states("embedding", "label")

    def update(self, embedding: Tensor, label: Tensor, ids: Tensor) -> None:
        """Add ``(B, D)`` embeddings with their ``(B,)`` class labels and sample ids."""
        ids = check_ids(ids, embedding.shape[0], "LinearProbeAccuracy")
        self._append_rows(ids, embedding=embedding.flatten(1).float(), label=label.to(torch.int64))

    def compute(self) -> Tensor:
        """Fraction of samples whose predicted class is their label."""
        _, rows = self._rows()
        pred = self.probe.predict(rows["embedding"].cpu().double().numpy())
        return torch.tensor(float(np.mean(pred == rows["label"].cpu().numpy())))


@torch.no_grad()
def fit_probe_on(dataset: torch.utils.data.Dataset, embed: Any, device: torch.device | str,
                 batch_size: int = 64) -> Pipeline:
    """Fit :func:`fit_linear_probe` on ``embed(batch)`` of every sample of ``dataset`` (batches moved to ``device``;
    labels from the ``label`` key)."""
    emb, labels = [], []
    for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        emb.append(embed(batch).cpu())
        labels.append(batch["label"].cpu())
    return fit_linear_probe(torch.cat(emb).numpy(), torch.cat(labels).numpy())
