"""Pure steps of the fMRI corpus on arrays: windows of TRs, their averages, and the checks of values.

DC-MAE and MinD-Vis (``code/dataset.py::process_voxel_ts``) turn a subject's time series ``(TRs, voxels)`` into
samples by averaging windows of ``t // 0.75 = 8 // 0.75 = 10`` TRs (``t = 8`` s at an assumed TR of 0.75 s; HCP's
is 0.72 s):
``np.array_split(v, len(v) // 10)``, then the mean of each part. ``np.array_split`` makes ``T // 10`` contiguous,
non-overlapping parts and spreads a remainder over the first ones (``T % n`` parts get one TR more), so no TR is
dropped; HCP's 1,200 TRs give exactly 120 windows of 10. :func:`window_bounds` reproduces that (``"spread"``) or
drops the last ``T % window_trs`` TRs instead (``"drop"``: every window exactly ``window_trs`` TRs).

The per-subject scalar z-score is :func:`brain2img.data.fmri.scalar_zscore` with every row of the subject.
"""

from __future__ import annotations

import numpy as np

REMAINDERS = ("spread", "drop")


def window_bounds(n_trs: int, window_trs: int, remainder: str, where: str) -> np.ndarray:
    """Boundaries of the averaging windows: window ``k`` covers TRs ``bounds[k]`` to ``bounds[k + 1] - 1``.

    Args:
        n_trs: TRs of the time series.
        window_trs: TRs per window; there are ``n_trs // window_trs`` windows.
        remainder: ``"spread"`` (the reference's ``np.array_split``: the ``n_trs % n`` first windows are one TR
            longer, every TR is used) or ``"drop"`` (windows of exactly ``window_trs``; the last TRs are unused).
        where: the file (and field) the series came from, named in the error.

    Returns:
        int64 ``(n_windows + 1,)``, starting at 0.

    Raises:
        ValueError: an unknown ``remainder``, or fewer TRs than one window (never padded).
    """
    if remainder not in REMAINDERS:
        raise ValueError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
    if int(window_trs) != window_trs or window_trs < 1:
        raise ValueError(f"window_trs must be a positive integer, got {window_trs!r}")
    n_windows = int(n_trs) // int(window_trs)
    if n_windows == 0:
        raise ValueError(f"{where}: {n_trs} TRs, fewer than one window of window_trs={window_trs} TRs; lower "
                         "window_trs or remove the file")
    if remainder == "drop":
        return np.arange(n_windows + 1, dtype=np.int64) * int(window_trs)
    base, longer = divmod(int(n_trs), n_windows)
    sizes = np.full(n_windows, base, dtype=np.int64)
    sizes[:longer] += 1
    return np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)])


def average_windows(series: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The mean of each window of a time series.

    Args:
        series: ``(TRs, voxels)``.
        bounds: from :func:`window_bounds` (TRs from ``bounds[-1]`` on are not used).

    Returns:
        float64 ``(len(bounds) - 1, voxels)``.
    """
    if series.ndim != 2 or len(series) < bounds[-1]:
        raise ValueError(f"expected a time series (TRs >= {int(bounds[-1])}, voxels), got shape {series.shape}")
    used = np.asarray(series[: int(bounds[-1])], dtype=np.float64)
    sums = np.add.reduceat(used, bounds[:-1], axis=0)
    return sums / np.diff(bounds).astype(np.float64)[:, None]


def check_finite(values: np.ndarray, where: str, row: str = "TR") -> None:
    """Raise ``ValueError`` naming ``where``, the row and the voxel of the first NaN/Inf in ``values (rows, voxels)``.

    Args:
        values: the array to check.
        where: the file and field, e.g. ``"HCP file '.../HCP_visual_voxel.npz', array 'V2'"``.
        row: what a row is (``"TR"``, ``"sample"``).
    """
    bad = ~np.isfinite(values)
    if bad.any():
        r, v = (int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"{where} contains {int(bad.sum())} NaN/Inf values, the first at {row} {r}, voxel {v}; "
                         "clean or remove it (values are never replaced)")
