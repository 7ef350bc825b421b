"""Voxel vectors to whole patches: MinD-Vis / DC-MAE ``pad_to_patch_size`` and the multi-subject wrap padding.

The fMRI masked autoencoder cuts a voxel vector into patches of ``patch_size`` voxels (file order). The reference
(MinD-Vis ``dataset.py::pad_to_patch_size``, unchanged in DC-MAE) wrap-pads ``patch_size - V % patch_size``
columns, that is the vector's first voxels again, so an already divisible count gains a *full* extra patch
(4656 -> 4672) while 5355 -> 5360. Data of several subjects is wrap-padded to the longest (``pad_to_length``).
These work on NumPy arrays and torch tensors alike, along the last axis.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def padded_length(n_voxels: int, patch_size: int = 16) -> int:
    """The reference's padded voxel count: ``n + patch_size - n % patch_size`` (a full extra patch when divisible).

    Raises:
        ValueError: a non-positive count or patch size.
    """
    if n_voxels < 1 or patch_size < 1:
        raise ValueError(f"need n_voxels >= 1 and patch_size >= 1, got n_voxels={n_voxels}, patch_size={patch_size}")
    return int(n_voxels) + int(patch_size) - int(n_voxels) % int(patch_size)


def pad_to_length(x: ArrayT, length: int) -> ArrayT:
    """Wrap-pad the last axis of ``x`` to ``length``: the first voxels are appended again (repeatedly if needed).

    Raises:
        ValueError: ``x`` is longer than ``length`` (padding never truncates) or empty.
    """
    n = x.shape[-1]
    if n < 1:
        raise ValueError("pad_to_length: cannot pad an empty voxel vector")
    if n > length:
        raise ValueError(f"pad_to_length: {n} voxels are more than the target length {length}; padding never "
                         "truncates (a model built for fewer voxels cannot read this subject)")
    if n == length:
        return x
    reps = -(-length // n)
    if isinstance(x, torch.Tensor):
        return torch.cat([x] * reps, dim=-1)[..., :length]
    return np.concatenate([x] * reps, axis=-1)[..., :length]


def pad_to_patch_size(x: ArrayT, patch_size: int = 16) -> ArrayT:
    """The reference's ``pad_to_patch_size``: wrap-pad the last axis to :func:`padded_length`."""
    return pad_to_length(x, padded_length(x.shape[-1], patch_size))
