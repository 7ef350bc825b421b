"""Pure functions of the EEG-ImageNet datamodule: linear resampling, block positions, the block-aware split and the
shuffled-pairs control (see :mod:`brain2img.data.eeg_imagenet`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from brain2img.data.splits import SPLITS

log = logging.getLogger(__name__)


def resample_linear(x: np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation along the last axis onto ``n_out`` points spanning the same interval.

    Equals ``scipy.interpolate.interp1d(np.linspace(0, 1, n), x)(np.linspace(0, 1, n_out))`` (the first and last
    samples are kept; the sample spacing becomes ``(n - 1) / (n_out - 1)`` of the original).

    Args:
        x: ``(..., n)`` with ``n >= 2``.
        n_out: number of output samples, ``>= 2``.
    """
    n = x.shape[-1]
    if n < 2 or n_out < 2:
        raise ValueError(f"linear resampling needs at least 2 input and 2 output samples, got {n} -> {n_out}")
    pos = np.linspace(0.0, n - 1.0, n_out)
    left = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    w = pos - left
    return x[..., left] * (1.0 - w) + x[..., left + 1] * w


def block_positions(subject: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks as maximal runs of consecutive entries with the same (subject, label), in the given (dataset) order.

    Returns:
        int64 block id per entry (0, 1, ... in order) and float64 relative position within its block,
        ``(rank + 0.5) / block_length`` in ``(0, 1)``.
    """
    n = len(subject)
    change = np.r_[True, (subject[1:] != subject[:-1]) | (label[1:] != label[:-1])] if n else np.zeros(0, bool)
    block = np.cumsum(change) - 1
    starts = np.flatnonzero(change)
    lengths = np.diff(np.r_[starts, n])
    rank = np.arange(n) - starts[block]
    return block.astype(np.int64), (rank + 0.5) / lengths[block]


def _class_counts(n: int, val_fraction: float, test_fraction: float, label: int) -> tuple[int, int]:
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"class {label} has {n} images: too few for val_fraction={val_fraction} and "
                         f"test_fraction={test_fraction} ({n_val} val + {n_test} test leave no training image)")
    return n_val, n_test


def block_split(trial_stimulus: np.ndarray, trial_position: np.ndarray, labels: np.ndarray,
                val_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """The block-aware split: within each class, the images shown early in their block train, later ones validate,
    the last ones test.

    EEG-ImageNet shows each class as one block per subject, and Li et al. (IEEE TPAMI 2021, "The perils and pitfalls
    of block design for EEG classification experiments") showed classifiers can ride on slow, block-level drift
    rather than on the stimulus. In the by-image reference split, test trials sit between training trials of the
    same block, so drift shared by neighbouring trials helps. Here each image gets its mean relative position in its
    blocks (one per subject; the ``.pth`` has no timestamps, so the dataset list order is taken as presentation
    order), and within each class the ``test_fraction`` latest images go to test, the ``val_fraction`` before them to
    val and the rest (the start of each block) to train. Every block keeps training trials, so every class stays
    learnable (holding out whole (subject, class) blocks would leave the tested class unseen).

    What it controls: test EEG is recorded later in its block than any training EEG of that class, so a shortcut
    through drift between neighbouring trials weakens. What it cannot control: class and block are still
    confounded (one block per class and subject), so an offset shared by a whole block still separates classes, and
    a drift trend within blocks can still be extrapolated. Only a rapid-event design (new recordings) removes that.
    It also trusts the list order, which the publishers do not document; with several subjects whose orders differ,
    the separation is by average position only.

    Args:
        trial_stimulus: stimulus position per trial.
        trial_position: relative position of each trial within its block (:func:`block_positions`).
        labels: class per stimulus position.
        val_fraction: per class, fraction of images in val (at least one if > 0).
        test_fraction: per class, fraction of images in test (at least one if > 0).

    Returns:
        Sorted stimulus positions for ``"train"``, ``"val"``, ``"test"``.
    """
    n_stim = len(labels)
    counts = np.bincount(trial_stimulus, minlength=n_stim)
    mean_pos = np.bincount(trial_stimulus, weights=trial_position, minlength=n_stim) / np.maximum(counts, 1)
    out: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val, n_test = _class_counts(len(members), val_fraction, test_fraction, int(label))
        ordered = members[np.lexsort((members, mean_pos[members]))]
        n_train = len(members) - n_val - n_test
        out["train"].append(ordered[:n_train])
        out["val"].append(ordered[n_train : n_train + n_val])
        out["test"].append(ordered[n_train + n_val :])
    return {name: np.sort(np.concatenate(parts)).astype(np.int64) for name, parts in out.items()}


def shuffle_train_pairs(trial_stimulus: np.ndarray, trial_subject: np.ndarray, train_stimuli: np.ndarray,
                        seed: int) -> np.ndarray:
    """The shuffled-pairs control: permute the stimuli of the training trials within each subject (seeded).

    Returns:
        A copy of ``trial_stimulus``; trials of other splits are unchanged, and each subject's training trials keep
        the same multiset of stimuli (so split membership by stimulus is unchanged).
    """
    out = trial_stimulus.copy()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    in_train = np.isin(trial_stimulus, train_stimuli)
    for s in np.unique(trial_subject):
        idx = np.flatnonzero(in_train & (trial_subject == s))
        out[idx] = trial_stimulus[idx][rng.permutation(len(idx))]
    return out


def segment(x: Any, t0: int, t1: int) -> np.ndarray:
    """Samples ``[t0, t1)`` of a stored ``(C, L)`` record as float64 NumPy."""
    if torch.is_tensor(x):
        return x[:, t0:t1].detach().to(torch.float64).numpy()
    return np.asarray(x[:, t0:t1], dtype=np.float64)


def block_summary(block: np.ndarray, position: np.ndarray, trial_stimulus: np.ndarray,
                   trial_subject: np.ndarray, trial_label: np.ndarray, splits: dict[str, np.ndarray]
                   ) -> dict[str, Any]:
    """How the split sits in the blocks: mean within-block position per split, blocks without training trials."""
    n_pairs = len(np.unique(np.stack([trial_subject, trial_label], axis=1), axis=0))
    n_blocks = int(block.max()) + 1
    out: dict[str, Any] = {"n_blocks": n_blocks, "n_subject_class_pairs": n_pairs, "mean_position": {}}
    for name, stim in splits.items():
        in_split = np.isin(trial_stimulus, stim)
        out["mean_position"][name] = float(position[in_split].mean()) if in_split.any() else None
    has_train = np.zeros(n_blocks, dtype=bool)
    has_train[block[np.isin(trial_stimulus, splits["train"])]] = True
    out["blocks_without_train"] = int((~has_train).sum())
    if n_blocks != n_pairs:
        log.warning("EEG-ImageNet: %d runs of equal (subject, class) in the record list but %d (subject, class) "
                    "pairs: the list is not in block order, so within-block positions are not presentation "
                    "order", n_blocks, n_pairs)
    return out
