"""Steps every fMRI wing shares: the MinD-Vis / DC-MAE scalar z-score with training statistics.

The reference (``dataset.py``) subtracts one mean and divides by one standard deviation computed over a whole voxel
matrix (not per voxel). For GOD it uses the training matrix and applies it to the test rows; for BOLD5000 it uses
the whole matrix *before* the split, which lets test statistics into training. brain2img always computes them on
the training rows only (:func:`scalar_zscore`), and records them in the prepared folder's manifest.
"""

from __future__ import annotations

import numpy as np


def scalar_zscore(brain: np.ndarray, train_rows: np.ndarray, what: str) -> tuple[np.ndarray, float, float]:
    """``(brain - mean) / std`` with one scalar mean and std (ddof 0) over the training rows.

    Args:
        brain: ``(n_rows, n_voxels)`` values.
        train_rows: indices or a boolean mask of the training rows.
        what: what the matrix is (for errors), e.g. ``"GOD sbj_3.npz"``.

    Returns:
        float32 normalised matrix, the mean and the std.

    Raises:
        ValueError: no training rows, non-finite values, or a constant training matrix.
    """
    train = np.asarray(brain[train_rows], dtype=np.float64)
    if train.size == 0:
        raise ValueError(f"{what}: no training rows to compute the z-score statistics from")
    if not np.isfinite(train).all():
        raise ValueError(f"{what}: the training rows contain NaN or Inf values")
    mean, std = float(train.mean()), float(train.std())
    if not std > 0:
        raise ValueError(f"{what}: the training rows are constant (std 0); cannot z-score")
    return ((np.asarray(brain, dtype=np.float64) - mean) / std).astype(np.float32), mean, std
