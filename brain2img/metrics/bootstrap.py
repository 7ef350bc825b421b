"""Percentile bootstrap confidence interval of a mean over per-sample scores."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def bootstrap_ci(
    scores: Tensor | np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` confidence interval of the mean of ``scores``.

    Resamples the samples with replacement ``n_boot`` times (``np.random.default_rng(seed)``), takes each
    resample's mean and returns the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of those means.

    Args:
        scores: 1-D per-sample scores (finite values only; drop NaN entries, e.g. retrieval queries never drawn,
            before calling).
        n_boot: number of bootstrap resamples.
        alpha: 1 - confidence level (0.05 gives a 95% interval).
        seed: seed of the resampling.

    Returns:
        ``(low, high)`` as floats.
    """
    if isinstance(scores, Tensor):
        scores = scores.detach().to("cpu", torch.float64).numpy()
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"bootstrap_ci: `scores` must be a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_ci: `scores` contains NaN or infinite values; drop them explicitly first")
    if n_boot < 1:
        raise ValueError(f"bootstrap_ci: `n_boot` must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"bootstrap_ci: `alpha` must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, 2**22 // n)  # bound the index matrix at ~4M entries
    for start in range(0, n_boot, chunk):
        stop = min(start + chunk, n_boot)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap_ci(a: Tensor | np.ndarray, b: Tensor | np.ndarray, n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0) -> tuple[float, float, float]:
    """Mean difference ``a - b`` of paired per-sample scores (the same test stimuli scored by two methods) and its
    percentile bootstrap interval, resampling the *pairs* (:func:`bootstrap_ci` of the differences).

    Returns:
        ``(mean difference, low, high)``.

    Raises:
        ValueError: ``a`` and ``b`` differ in shape (they must score the same samples in the same order).
    """
    a = np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, Tensor) else b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap_ci: the two score arrays must pair up, got shapes {a.shape} and {b.shape}")
    diff = a - b
    low, high = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    return float(diff.mean()), low, high
