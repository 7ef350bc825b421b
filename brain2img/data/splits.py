"""Seeded train/val/test splits by stimulus (pure functions on arrays; nothing here reads or writes files)."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def split_stimuli(labels: np.ndarray, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """Split stimuli (not trials) into train/val/test, stratified by label.

    Within each label the stimuli are shuffled and given evenly spaced positions in ``[0, 1)`` (plus a random
    offset); sorting all stimuli by position and cutting at the split sizes gives every label close to its share of
    each split, with exact split sizes. With all labels equal (e.g. ``-1``, unknown) it is a plain random split.

    Args:
        labels: one label per stimulus ``(N,)``.
        val_fraction: fraction of stimuli in val, ``>= 0``.
        test_fraction: fraction of stimuli in test, ``>= 0``; ``val_fraction + test_fraction < 1``.
        seed: random seed.

    Returns:
        Sorted stimulus positions (int64) for ``"train"``, ``"val"`` and ``"test"``; disjoint, covering all.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need val_fraction >= 0, test_fraction >= 0 and val_fraction + test_fraction < 1, got "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction}")
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} stimuli are too few for val_fraction={val_fraction} and test_fraction={test_fraction}: "
                         f"{n_test} test + {n_val} val leave no training stimulus")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    position = np.empty(n)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = rng.permutation(len(members))
        position[members[order]] = (np.arange(len(members)) + rng.uniform()) / len(members)
    ranked = np.lexsort((rng.uniform(size=n), position))
    return {
        "test": np.sort(ranked[:n_test]).astype(np.int64),
        "val": np.sort(ranked[n_test : n_test + n_val]).astype(np.int64),
        "train": np.sort(ranked[n_test + n_val :]).astype(np.int64),
    }


def split_trials(trial_stimulus: np.ndarray, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Trial indices of each split (trials whose stimulus is in the split), in trial order."""
    return {name: np.flatnonzero(np.isin(trial_stimulus, stim)).astype(np.int64) for name, stim in splits.items()}


def split_fixed_test(is_test: np.ndarray, val_fraction: float, seed: int, stream: int, empty_test: str,
                     others: str) -> dict[str, np.ndarray]:
    """Stimulus positions of each split when the dataset fixes its test images (NSD's shared1000, BOLD5000's
    repeated images): test = ``is_test``, val = a seeded ``val_fraction`` of the others (at least one), train = rest.

    Args:
        is_test: boolean, one per stimulus position.
        val_fraction: ``0 < val_fraction < 1``.
        seed: seed of the val draw.
        stream: the dataset's random stream (with ``seed``: ``SeedSequence([seed, stream])``).
        empty_test: the error message when no test image is present.
        others: how the non-test images are called in errors (e.g. ``"non-shared images"``).

    Raises:
        ValueError: an empty test split, or no training image left.
    """
    test, rest = np.flatnonzero(is_test), np.flatnonzero(~np.asarray(is_test, dtype=bool))
    if not len(test):
        raise ValueError(empty_test)
    n_val = max(1, int(round(len(rest) * val_fraction)))
    if len(rest) - n_val < 1:
        raise ValueError(f"{len(rest)} {others} are too few for val_fraction={val_fraction}: no training image would "
                         "be left")
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    val = np.sort(rng.choice(rest, size=n_val, replace=False))
    return {"train": np.setdiff1d(rest, val).astype(np.int64), "val": val.astype(np.int64),
            "test": test.astype(np.int64)}
