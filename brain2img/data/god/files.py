"""The files of the MinD-Vis / DC-MAE copy of GOD (``layout="npz"``): what each holds, and one reader for each.

The folder (MinD-Vis's FigShare ``data/Kamitani/npz``; DC-MAE ships the same files) holds:

- ``sbj_{1..5}.npz``, one per subject, released by the Weizmann Vision Lab (Beliy et al., NeurIPS 2019; Gaziv et
  al., NeuroImage 2022): github.com/WeizmannVision/SelfSuperReconst ``self_super_reconst/utils/datasets.py`` reads
  ``arr_0`` ... ``arr_6`` and takes every other key as a ROI mask; github.com/WeizmannVision/ssfmri2im
  ``KamitaniData/kamitani_data_handler.py`` computes the same matrices from the Kamitani lab's data (training rows,
  per-trial test rows, their mean per test image, the image index of each row); MinD-Vis reads ``arr_0``,
  ``arr_2``, ``arr_3`` and the ``VC`` mask (``arr_1`` for pre-training):

  - ``arr_0``: training fMRI ``(n_train_rows, n_columns)``, one row per training trial (1200);
  - ``arr_1``: test fMRI, one row per trial, in presentation order ``(n_test_trials, n_columns)`` (50 x 35);
  - ``arr_2``: test fMRI averaged over the repeats of each test image ``(n_test_images, n_columns)`` (50);
  - ``arr_3``: int ``(n_train_rows,)``, the ``train_images`` index of each ``arr_0`` row;
  - ``arr_4``: int ``(n_test_trials,)``, the ``test_images`` index of each ``arr_1`` row (so ``arr_2[i]`` is the
    mean of the ``arr_1`` rows where ``arr_4 == i``, checked);
  - ``arr_5``, ``arr_6``: per-voxel noise ceiling and SNR (not read here);
  - every other key: a boolean ROI mask over the columns ``(n_columns,)``: ``V1``, ``V2``, ``V3``, ``V4``, ``LOC``,
    ``FFA``, ``PPA``, ``LVC`` (V1-V3), ``HVC`` (LOC, FFA, PPA), ``VC`` (3444, 4979, 5355, 4656 and 6237 voxels for
    subjects 1-5).
- ``images_256.npz``: ``train_images`` uint8 ``(1200, 256, 256, 3)`` and ``test_images`` uint8 ``(50, 256, 256, 3)``.
- ``imagenet_training_label.csv`` / ``imagenet_testing_label.csv``: one row per image of ``train_images`` /
  ``test_images``, in that order, no header, as the Kamitani lab's ``imageID_training.csv`` / ``imageID_test.csv``
  (github.com/KamitaniLab/GenericObjectDecoding ``data/``): ``1518878.005958,"n01518878_5958.JPEG"``, the GOD
  stimulus id (synset number, a dot, the image number in 6 digits) and the ImageNet file name.
- ``imagenet_class_index.json``: ``{"<class>": ["n<synset>", ..., "<description>"], ...}``; the label of an image is
  the first class (in file order) whose synset list holds the image's synset, as MinD-Vis ``get_img_label`` does.

Stimulus ids are integers: ``synset number x 10**6 + image number`` (``1518878005958``), see
:mod:`brain2img.data.god.prep`. Every check names the file and the field.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.god.prep import check_test_average, check_test_design, first_nonfinite, stimulus_id
from brain2img.io import load_npz, read_json, reading

IMAGES_FILE = "images_256.npz"
CLASS_INDEX_FILE = "imagenet_class_index.json"
TRAIN_LABELS_FILE = "imagenet_training_label.csv"
TEST_LABELS_FILE = "imagenet_testing_label.csv"
IMAGE_KEYS = ("train_images", "test_images")
FIELDS = {"arr_0": "training fMRI (rows, columns)", "arr_1": "per-trial test fMRI (rows, columns)",
          "arr_2": "test fMRI averaged over repeats (images, columns)", "arr_3": "train_images index per arr_0 row",
          "arr_4": "test_images index per arr_1 row"}
ARRAY_KEY = re.compile(r"arr_\d+")
CSV_ID = re.compile(r"(\d+)\.(\d{1,6})")
CSV_NAME = re.compile(r"n(\d+)_(\d+)\.JPEG")
NPZ = "NumPy .npz"
SUBJECT_WHAT = "GOD subject file"


def subject_file(root: str | Path, subject: int) -> Path:
    """``<root>/sbj_<subject>.npz``."""
    return Path(root) / f"sbj_{subject}.npz"


# --------------------------------------------------------------------------------------------------- sbj_k.npz
def npz_member(npz: Any, path: Path, key: str) -> np.ndarray:
    """Array ``key`` of an open npz, errors naming the file."""
    with reading(path, NPZ, SUBJECT_WHAT):
        return np.asarray(npz[key])


def npz_header(npz: Any, path: Path, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``key`` from its ``.npy`` header, without reading the data."""
    with reading(path, NPZ, SUBJECT_WHAT), npz.zip.open(f"{key}.npy") as handle:
        version = np.lib.format.read_magic(handle)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            arr = np.asarray(npz[key])
            return tuple(arr.shape), arr.dtype
        shape, _, dtype = read(handle)
    return tuple(shape), np.dtype(dtype)


def read_roi_masks(path: str | Path, roi: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The mask of ``roi`` and every ROI mask of a subject file (keys not named ``arr_<k>``), reading nothing else.

    Keys that are not boolean ``(n_columns,)`` arrays of the selected mask's length are not ROI masks and are left
    out of the returned dict.

    Returns:
        bool ``(n_columns,)`` mask of ``roi``; name -> bool mask of every ROI.

    Raises:
        ValueError: ``roi`` is not a key, or its mask is not a non-empty boolean vector (the file and key named).
    """
    path = Path(path)
    npz = load_npz(path, SUBJECT_WHAT)
    with npz:
        names = [k for k in npz.files if not ARRAY_KEY.fullmatch(k)]
        if roi not in names:
            raise ValueError(f"{SUBJECT_WHAT} '{path}' has no ROI mask '{roi}' (its ROI masks: {names}; arrays: "
                             f"{[k for k in npz.files if k not in names]})")
        masks = {name: npz_member(npz, path, name) for name in names}
    mask = masks[roi]
    if mask.dtype != np.bool_ or mask.ndim != 1 or not mask.any():
        raise ValueError(f"{SUBJECT_WHAT} '{path}': ROI mask '{roi}' is {mask.dtype} {mask.shape} with "
                         f"{int(np.count_nonzero(mask))} voxel(s); expected a boolean (n_columns,) vector selecting "
                         "at least one column")
    return mask, {k: m for k, m in masks.items() if m.dtype == np.bool_ and m.shape == mask.shape}


@dataclass
class SubjectArrays:
    """The ROI columns of one ``sbj_k.npz``, checked.

    Attributes:
        train: float64 ``(n_train_rows, n_voxels)`` (``arr_0``).
        train_image: int64 ``(n_train_rows,)`` ``train_images`` index of each row (``arr_3``).
        test: float64: ``arr_2`` ``(n_test_images, n_voxels)``, or ``arr_1`` ``(n_test_trials, n_voxels)``.
        test_image: int64 ``test_images`` index of each ``test`` row (``arange`` for ``arr_2``, ``arr_4``).
        test_field: ``"arr_2"`` or ``"arr_1"``.
    """

    train: np.ndarray
    train_image: np.ndarray
    test: np.ndarray
    test_image: np.ndarray
    test_field: str


def _check_index(arr: np.ndarray, n: int, path: Path, key: str, of: str) -> np.ndarray:
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{SUBJECT_WHAT} '{path}': field '{key}' ({FIELDS[key]}) has dtype {arr.dtype}, expected "
                         "integer indices")
    bad = np.flatnonzero((arr < 0) | (arr >= n))
    if len(bad):
        raise ValueError(f"{SUBJECT_WHAT} '{path}': field '{key}' row {int(bad[0])} is {int(arr[bad[0]])}, outside "
                         f"the {n} {of} (valid 0..{n - 1}; {len(bad)} such row(s))")
    return arr.astype(np.int64)


def finite_rows(x: np.ndarray, path: Path, key: str, roi: str) -> np.ndarray:
    """``x`` if every value is finite, else an error naming the file, the field, the ROI and the first bad row."""
    found = first_nonfinite(x)
    if found is not None:
        row, col, count = found
        raise ValueError(f"{SUBJECT_WHAT} '{path}': field '{key}' ({FIELDS[key]}) has {count} NaN or Inf value(s) in "
                         f"ROI '{roi}' (first: row {row}, ROI column {col}); they are not dropped silently: choose "
                         "another ROI or fix the file")
    return x


def read_subject(path: str | Path, roi: str, mask: np.ndarray, n_train_images: int, n_test_images: int,
                 test_repeats: int, per_trial: bool, images_path: str | Path) -> SubjectArrays:
    """Read and check the ROI columns of ``sbj_k.npz``.

    Checks: the fields are there; ``arr_0``, ``arr_1``, ``arr_2`` are 2-D with as many columns as the ROI mask;
    ``arr_3`` has one index per ``arr_0`` row, each within ``train_images``; ``arr_2`` has one row per test image;
    ``arr_1`` has ``arr_2`` rows x ``test_repeats`` rows; with ``per_trial``, ``arr_4`` gives every ``arr_1`` row
    its test image, each image exactly ``test_repeats`` times, and ``arr_2`` is the mean of its rows; values are
    finite.

    Args:
        path: the subject file.
        roi: name of ``mask`` (for messages).
        mask: bool ``(n_columns,)`` columns to read.
        n_train_images: images in ``train_images``; n_test_images: in ``test_images``.
        test_repeats: repeats of each test image in ``arr_1`` (35 in GOD).
        per_trial: serve ``arr_1`` (one row per trial, needs ``arr_4``) instead of ``arr_2``.
        images_path: the images file (for messages).
    """
    path = Path(path)
    need = ["arr_0", "arr_1", "arr_2", "arr_3"] + (["arr_4"] if per_trial else [])
    npz = load_npz(path, SUBJECT_WHAT)
    with npz:
        missing = [k for k in need if k not in npz.files]
        if missing:
            why = " (arr_4 gives the test image of each arr_1 row: eval_repeats='single' needs it)" \
                if missing == ["arr_4"] else ""
            raise ValueError(f"{SUBJECT_WHAT} '{path}' lacks the field(s) {missing}{why}; it holds {npz.files}; "
                             f"expected {[f'{k}: {FIELDS[k]}' for k in need]}")
        shapes = {k: npz_header(npz, path, k) for k in need}
        for key in ("arr_0", "arr_1", "arr_2"):
            shape, dtype = shapes[key]
            if len(shape) != 2 or shape[1] != len(mask) or not np.issubdtype(dtype, np.number):
                raise ValueError(f"{SUBJECT_WHAT} '{path}': field '{key}' ({FIELDS[key]}) is {dtype} {shape}, "
                                 f"expected a numeric (rows, {len(mask)}) matrix: one column per entry of the ROI "
                                 f"mask '{roi}'")
        n_rows, n_avg, n_trials = shapes["arr_0"][0][0], shapes["arr_2"][0][0], shapes["arr_1"][0][0]
        if shapes["arr_3"][0] != (n_rows,):
            raise ValueError(f"{SUBJECT_WHAT} '{path}': field 'arr_3' (train_images index per arr_0 row) has shape "
                             f"{shapes['arr_3'][0]}, but 'arr_0' has {n_rows} rows: the counts of fMRI rows and image "
                             "indices differ")
        if n_avg != n_test_images:
            raise ValueError(f"{SUBJECT_WHAT} '{path}': field 'arr_2' has {n_avg} rows (test images) but "
                             f"'{images_path}' field 'test_images' holds {n_test_images} images")
        if n_trials != n_avg * test_repeats:
            raise ValueError(f"{SUBJECT_WHAT} '{path}': field 'arr_1' has {n_trials} rows, expected 'arr_2' rows x "
                             f"test_repeats = {n_avg} x {test_repeats} = {n_avg * test_repeats}; set test_repeats "
                             "to the repeats of each test image")
        train_image = _check_index(npz_member(npz, path, "arr_3"), n_train_images, path, "arr_3",
                                   f"images of '{images_path}' field 'train_images'")
        train = finite_rows(npz_member(npz, path, "arr_0")[:, mask].astype(np.float64), path, "arr_0", roi)
        average = finite_rows(npz_member(npz, path, "arr_2")[:, mask].astype(np.float64), path, "arr_2", roi)
        if not per_trial:
            return SubjectArrays(train, train_image, average, np.arange(n_avg, dtype=np.int64), "arr_2")
        if shapes["arr_4"][0] != (n_trials,):
            raise ValueError(f"{SUBJECT_WHAT} '{path}': field 'arr_4' (test_images index per arr_1 row) has shape "
                             f"{shapes['arr_4'][0]}, but 'arr_1' has {n_trials} rows")
        test_image = _check_index(npz_member(npz, path, "arr_4"), n_avg, path, "arr_4", "test images of 'arr_2'")
        trials = finite_rows(npz_member(npz, path, "arr_1")[:, mask].astype(np.float64), path, "arr_1", roi)
    where = f"{SUBJECT_WHAT} '{path}'"
    check_test_design(test_image, n_avg, test_repeats, f"{where} field 'arr_4'")
    check_test_average(trials, test_image, average, f"{where} fields 'arr_1', 'arr_4' and 'arr_2'")
    return SubjectArrays(train, train_image, trials, test_image, "arr_1")


# --------------------------------------------------------------------------------------------------- images
def read_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``train_images`` and ``test_images`` of ``images_256.npz``, each uint8 ``(N, S, S, 3)`` with ``N >= 1``."""
    path = Path(path)
    what = "GOD images file"
    npz = load_npz(path, what, keys=IMAGE_KEYS)
    out = []
    with npz:
        for key in IMAGE_KEYS:
            with reading(path, NPZ, what):
                arr = np.asarray(npz[key])
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != arr.shape[2] or arr.shape[3] != 3 \
                    or not len(arr):
                raise ValueError(f"{what} '{path}': field '{key}' is {arr.dtype} {arr.shape}, expected uint8 "
                                 "(n_images, S, S, 3) RGB squares (MinD-Vis: 256 x 256)")
            out.append(arr)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------- labels
def read_label_csv(path: str | Path, n_images: int, images_path: str | Path, key: str) -> np.ndarray:
    """The stimulus id of every image of ``images_path`` field ``key``, from its label csv (one row per image).

    A row is ``<synset>.<image>`` (up to 6 decimals, the GOD stimulus id) and optionally the file name
    ``n<synset>_<image>.JPEG``, which must agree with it.

    Returns:
        int64 ``(n_images,)`` stimulus ids (``synset x 10**6 + image``), distinct.
    """
    path = Path(path)
    what = "GOD label list"
    with reading(path, "CSV text", what), open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    ids = []
    for line, row in enumerate(rows, start=1):
        cell = row[0].strip() if row else ""
        match = CSV_ID.fullmatch(cell)
        if match is None:
            raise ValueError(f"{what} '{path}' line {line}: the stimulus id {cell!r} is not '<synset number>."
                             "<image number>' (e.g. 1518878.005958 = n01518878_5958.JPEG)")
        synset, image = int(match.group(1)), int(match.group(2).ljust(6, "0"))
        name = row[1].strip() if len(row) > 1 else ""
        named = CSV_NAME.fullmatch(name)
        if name and (named is None or (int(named.group(1)), int(named.group(2))) != (synset, image)):
            raise ValueError(f"{what} '{path}' line {line}: the file name {name!r} does not match the stimulus id "
                             f"{cell} (expected 'n{synset:08d}_{image}.JPEG')")
        ids.append(stimulus_id(synset, image))
    if len(ids) != n_images:
        raise ValueError(f"{what} '{path}' has {len(ids)} rows but '{images_path}' field '{key}' holds {n_images} "
                         "images: one row per image is expected, in the same order")
    out = np.asarray(ids, dtype=np.int64)
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        lines = (np.flatnonzero(out == dup) + 1).tolist()
        raise ValueError(f"{what} '{path}': stimulus id {dup // 10**6}.{dup % 10**6:06d} is listed on lines {lines}")
    return out


def read_class_index(path: str | Path) -> dict[int, int]:
    """Synset number -> class of ``imagenet_class_index.json`` (the first class in file order listing it)."""
    path = Path(path)
    what = "ImageNet class index"
    data = read_json(path, what)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{what} '{path}' is {type(data).__name__}, expected a non-empty object "
                         '{"<class>": ["n<synset>", ..., "<description>"]}')
    out: dict[int, int] = {}
    for key, value in data.items():
        synsets = value[:-1] if isinstance(value, list) and len(value) >= 2 else None
        if not key.isdigit() or synsets is None or not all(isinstance(s, str) and re.fullmatch(r"n\d+", s)
                                                           for s in synsets):
            raise ValueError(f"{what} '{path}': entry {key!r}: {value!r} is not '<class number>': ['n<synset>', ..., "
                             "'<description>']")
        for s in synsets:
            out.setdefault(int(s[1:]), int(key))
    return out


def imagenet_labels(ids: np.ndarray, classes: dict[int, int], csv_path: str | Path, json_path: str | Path
                    ) -> np.ndarray:
    """The class of each stimulus id (by its synset); a synset in no class is an error naming it and the files
    (MinD-Vis skips such an image, which shifts every later label by one)."""
    out = np.empty(len(ids), dtype=np.int64)
    for i, sid in enumerate(np.asarray(ids, dtype=np.int64)):
        synset = int(sid) // 10**6
        if synset not in classes:
            raise ValueError(f"synset n{synset:08d} of GOD label list '{csv_path}' (row {i + 1}) is in no class of "
                             f"ImageNet class index '{json_path}'")
        out[i] = classes[synset]
    return out
