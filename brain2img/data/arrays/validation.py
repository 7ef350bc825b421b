"""Checks of user-supplied arrays, each failing with a message that names the file and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGE_LAYOUTS = "(N, H, W, 3) uint8 in [0, 255] or (N, 3, H, W) float in [0, 1], with H == W"


def check_brain(brain: np.ndarray, path: str | Path) -> np.ndarray:
    """Brain data must be numeric ``(n_trials, n_voxels)`` or ``(n_trials, n_channels, n_times)`` and finite.

    Returns:
        The data as float32.
    """
    if brain.ndim not in (2, 3) or len(brain) == 0:
        raise ValueError(f"brain data '{path}' has shape {brain.shape}: expected (n_trials, n_voxels) for fMRI or "
                         f"(n_trials, n_channels, n_times) for EEG, with at least one trial")
    if not (np.issubdtype(brain.dtype, np.floating) or np.issubdtype(brain.dtype, np.integer)):
        raise ValueError(f"brain data '{path}' has dtype {brain.dtype}: expected a real number dtype (e.g. float32)")
    bad = ~np.isfinite(brain.reshape(len(brain), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"brain data '{path}' contains NaN or Inf in {int(bad.sum())} of {len(brain)} trials "
                         f"(first bad trial index {int(np.argmax(bad))})")
    return brain.astype(np.float32, copy=False)


def image_layout(shape: tuple[int, ...], dtype: np.dtype, path: str | Path) -> str:
    """``"nhwc"`` for ``(N, H, W, 3)`` uint8, ``"nchw"`` for ``(N, 3, H, W)`` float; otherwise a clear error."""
    if len(shape) == 4 and shape[-1] == 3 and dtype == np.uint8 and shape[1] == shape[2]:
        return "nhwc"
    if len(shape) == 4 and shape[1] == 3 and np.issubdtype(dtype, np.floating) and shape[2] == shape[3]:
        return "nchw"
    raise ValueError(f"images '{path}' have shape {tuple(shape)} and dtype {dtype}: expected {IMAGE_LAYOUTS}")


def check_images(images: np.ndarray, path: str | Path) -> np.ndarray:
    """Validate images in either accepted layout and return uint8 ``(N, H, W, 3)``."""
    layout = image_layout(images.shape, images.dtype, path)
    if layout == "nhwc":
        return np.ascontiguousarray(images)
    finite = np.isfinite(images)
    if not finite.all():
        raise ValueError(f"images '{path}' contain NaN or Inf: expected {IMAGE_LAYOUTS}")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"images '{path}' are float with values in [{lo:.4g}, {hi:.4g}]: expected {IMAGE_LAYOUTS}")
    return np.ascontiguousarray(np.round(images.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8))


def check_counts(n_brain: int, brain_path: str | Path, n_images: int, images_path: str | Path) -> None:
    """One image per trial: the two files must have the same first dimension."""
    if n_brain != n_images:
        raise ValueError(f"brain data '{brain_path}' has {n_brain} trials but images '{images_path}' has {n_images} "
                         f"images: expected one image per trial (the same count in both files)")


def check_per_trial(values: np.ndarray, path: str | Path, what: str, n_trials: int, brain_path: str | Path
                    ) -> np.ndarray:
    """A per-trial integer vector (stimulus ids, labels, subjects) with one entry per trial.

    Returns:
        The values as int64.
    """
    if values.ndim != 1 or len(values) != n_trials:
        raise ValueError(f"{what} '{path}' has shape {values.shape}: expected ({n_trials},), one per trial of "
                         f"'{brain_path}'")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(np.isfinite(values)) or \
                not np.array_equal(values, np.round(values)):
            raise ValueError(f"{what} '{path}' has dtype {values.dtype} with non-integer values: expected integers")
    return values.astype(np.int64)


def check_constant_per_stimulus(values: np.ndarray, inverse: np.ndarray, stimulus_ids: np.ndarray,
                                path: str | Path, what: str) -> np.ndarray:
    """Per-trial values must agree within each stimulus; return one value per stimulus.

    Args:
        values: per-trial values ``(n_trials, ...)``.
        inverse: stimulus position of each trial.
        stimulus_ids: id of each stimulus position (for the message).
        path: the file the values came from.
        what: what the values are (for the message).
    """
    _, first = np.unique(inverse, return_index=True)
    per_stim = values[first]
    differs = (values != per_stim[inverse]).reshape(len(values), -1).any(axis=1)
    if differs.any():
        trial = int(np.argmax(differs))
        raise ValueError(f"{what} '{path}' differ between trials of the same stimulus: trial {trial} and trial "
                         f"{int(first[inverse[trial]])} share stimulus id {int(stimulus_ids[inverse[trial]])}")
    return per_stim
