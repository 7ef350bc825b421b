"""Pure steps of the GOD datamodule on arrays: stimulus ids, the split, ROI columns, checks of the test design.

Stimulus ids: GOD names a stimulus by a float ``<synset number>.<image number in 6 digits>`` (``1518878.005958`` is
image 5958 of synset n01518878, file ``n01518878_5958.JPEG``; KamitaniLab/GenericObjectDecoding
``makedata_features.py``); here it is the integer ``synset x 10**6 + image`` (``1518878005958``), exact and sortable.
"""

from __future__ import annotations

import numpy as np

from brain2img.data.splits import split_stimuli

ID_SCALE = 10**6
ROUND_TOLERANCE = 1e-2  # of an image number recovered from a float64 id (its error is ~1e-3 at worst)


def stimulus_id(synset: int, image: int) -> int:
    """``synset x 10**6 + image``."""
    return int(synset) * ID_SCALE + int(image)


def synsets(ids: np.ndarray) -> np.ndarray:
    """The synset number of each stimulus id (its category)."""
    return np.asarray(ids, dtype=np.int64) // ID_SCALE


def image_name(sid: int) -> str:
    """The ImageNet file name of a stimulus id: ``n<synset, 8 digits>_<image>.JPEG``."""
    return f"n{int(sid) // ID_SCALE:08d}_{int(sid) % ID_SCALE}.JPEG"


def float_label(sid: int) -> str:
    """The GOD float label of a stimulus id (``1518878.005958``), for messages."""
    return f"{int(sid) // ID_SCALE}.{int(sid) % ID_SCALE:06d}"


def ids_from_floats(values: np.ndarray, where: str, samples: np.ndarray | None = None) -> np.ndarray:
    """Integer stimulus ids of GOD float labels (``1518878.005958`` -> ``1518878005958``).

    Args:
        values: the float labels.
        where: the file and field, for messages.
        samples: the sample number of each value, for messages (default ``0, 1, ...``).

    Raises:
        ValueError: a value that is not finite, not positive, or has more than 6 decimals (the first bad sample is
            named).
    """
    v = np.asarray(values, dtype=np.float64)
    synset = np.floor(v)
    image = (v - synset) * ID_SCALE
    bad = ~np.isfinite(v) | (v < 1) | (np.abs(image - np.round(image)) > ROUND_TOLERANCE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        sample = i if samples is None else int(samples[i])
        raise ValueError(f"{where}: sample {sample} has stimulus id {float(v[i])!r}, not '<synset number>.<image "
                         f"number in 6 digits>' (e.g. 1518878.005958); {int(bad.sum())} such sample(s)")
    return synset.astype(np.int64) * ID_SCALE + np.round(image).astype(np.int64)


def first_nonfinite(x: np.ndarray) -> tuple[int, int, int] | None:
    """``(row, column, count)`` of the first NaN or Inf of a matrix and how many there are, or ``None``."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    row, col = (int(v) for v in np.argwhere(bad)[0])
    return row, col, int(bad.sum())


def god_splits(stimulus_ids: np.ndarray, test_ids: np.ndarray, val_fraction: float, seed: int
               ) -> dict[str, np.ndarray]:
    """Stimulus positions of each split: test = the test images, val = a seeded share of the training images
    stratified by category (synset), train = the other training images.

    Args:
        stimulus_ids: id of each stimulus position (sorted).
        test_ids: ids of the test images (each must be in ``stimulus_ids``).
        val_fraction: share of the training images in val (at least one), ``0 < val_fraction < 1``.
        seed: seed of the val draw.
    """
    is_test = np.isin(stimulus_ids, test_ids)
    rest = np.flatnonzero(~is_test)
    if not len(rest):
        raise ValueError("no training image: every stimulus is a test image")
    inner = split_stimuli(synsets(stimulus_ids[rest]), val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    return {"train": rest[inner["train"]].astype(np.int64), "val": rest[inner["val"]].astype(np.int64),
            "test": np.flatnonzero(is_test).astype(np.int64)}


def roi_column_map(roi: str, selected: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Columns of each ROI within the served vector (the ``selected`` columns, in file order).

    ``roi`` maps to every column; each other ROI whose voxels all lie inside ``selected`` maps to its columns
    (e.g. ``V1``, ``LVC``, ``HVC`` inside ``VC``); ROIs with voxels outside are left out (they are not served).

    Args:
        roi: the served ROI's name.
        selected: bool ``(n_columns,)`` served columns.
        masks: name -> bool ``(n_columns,)`` of every ROI of the file.
    """
    out = {roi: list(range(int(selected.sum())))}
    for name in sorted(masks):
        mask = np.asarray(masks[name], dtype=bool)
        if name == roi or mask.shape != selected.shape or not mask.any() or (mask & ~selected).any():
            continue
        out[name] = np.flatnonzero(mask[selected]).tolist()
    return out


def check_test_design(test_image: np.ndarray, n_images: int, repeats: int, where: str) -> None:
    """Every test image must have exactly ``repeats`` trials.

    Raises:
        ValueError: naming ``where`` (file and field), the first image with another count and the counts.
    """
    counts = np.bincount(np.asarray(test_image, dtype=np.int64), minlength=n_images)
    bad = np.flatnonzero(counts != repeats)
    if len(bad):
        raise ValueError(f"{where}: test image {int(bad[0])} has {int(counts[bad[0]])} trial(s), expected "
                         f"test_repeats = {repeats} for every test image ({len(bad)} image(s) differ; counts from "
                         f"{int(counts.min())} to {int(counts.max())})")


def check_test_average(trials: np.ndarray, test_image: np.ndarray, average: np.ndarray, where: str) -> None:
    """The averaged test rows must be the means of the per-trial rows of each image (``arr_2`` vs ``arr_1`` grouped
    by ``arr_4``), to a tolerance of 1e-4 of the data's scale: it confirms which trial belongs to which image."""
    sums = np.zeros_like(average)
    np.add.at(sums, test_image, trials)
    means = sums / np.bincount(test_image, minlength=len(average))[:, None]
    scale = max(float(np.abs(average).max()), 1e-12)
    err = np.abs(means - average).max(axis=1)
    bad = np.flatnonzero(err > 1e-4 * scale)
    if len(bad):
        raise ValueError(f"{where}: the mean of the per-trial rows of test image {int(bad[0])} differs from its "
                         f"averaged row by up to {float(err[bad[0]]):.3g} (data scale {scale:.3g}; {len(bad)} "
                         "image(s)): the per-trial rows do not belong to the images the index says")
