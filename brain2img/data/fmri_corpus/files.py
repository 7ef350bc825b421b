"""Readers of the fMRI corpus's sources: HCP visual-cortex ``.npz`` files, 4-D NIfTI series with a mask, ``.npy``,
GOD subject files.

Every source is one subject. :func:`plan_hcp`, :func:`plan_nifti`, :func:`plan_array` and :func:`plan_god` describe
it from its header alone (a :class:`Source`: TRs or samples, voxels), so every shape error comes before any data is
read and the corpus's voxel count is known before preparation; :func:`read_source` then reads its values, checked
for NaN/Inf.
Files are opened through :mod:`brain2img.io`, so a missing, empty, truncated or foreign file is an error naming the
file, the format and the cause; every field is checked, and a value that does not fit is an error naming the file
and the field, never a silent fix.

- HCP (DC-MAE ``data/HCP/preprocess_hcp.py`` writes, ``code/dataset.py::hcp_dataset`` reads):
  ``<root>/<subject>/HCP_visual_voxel.npz`` with float arrays ``V1``, ``V2``, ``V3``, ``V4`` of shape
  ``(1200 TRs, voxels)`` (the HCP-MMP areas 1/181, 4/184, 5/185, 6/186 of the resting-state CIFTI series). The
  reference's ``'VC'`` concatenates them in that order along the voxels.
- NIfTI: a 4-D series ``(X, Y, Z, T)`` and a 3-D mask on the same grid (shape and affine); the voxels are the
  mask's nonzero ones in C order of ``(X, Y, Z)``. The series is read in chunks of TRs (a 4-D run can be GBs).
- Extra ``.npy`` matrices ``(samples, voxels)`` of one subject each, taken as samples (no windowing).
- GOD (DC-MAE ``code/dataset.py::hcp_dataset(include_kam=True)``): the MinD-Vis / DC-MAE ``sbj_{k}.npz`` of one
  subject (:mod:`brain2img.data.god.files`, whose readers and checks are used here): the training fMRI ``arr_0``
  ``(1200 rows, columns)`` restricted to the columns of a boolean ROI mask (``VC`` by default), taken as samples (no
  windowing). Only the ROI masks and ``arr_0`` are read: the test fMRI (``arr_1``, ``arr_2``) never enters the
  corpus, so pre-training never sees the fMRI the decoders are evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.fmri_corpus.prep import check_finite
from brain2img.data.god.files import FIELDS as GOD_FIELDS
from brain2img.data.god.files import SUBJECT_WHAT as GOD_WHAT
from brain2img.data.god.files import finite_rows as god_finite
from brain2img.data.god.files import npz_header as god_header
from brain2img.data.god.files import npz_member as god_member
from brain2img.data.god.files import read_roi_masks
from brain2img.io import load_nifti, load_nifti_array, load_npy, load_npz, reading

HCP_FILE = "HCP_visual_voxel.npz"
HCP_ROIS = ("V1", "V2", "V3", "V4")
HCP_WHAT = "HCP visual-cortex time series"
NIFTI_WHAT = "fMRI time series (4-D NIfTI)"
MASK_WHAT = "voxel mask (3-D NIfTI, nonzero = kept)"
ARRAY_WHAT = "extra fMRI samples (.npy, samples x voxels)"
NPZ_FORMAT = "NumPy .npz"
GOD_TRAIN = "arr_0"  # the only fMRI field of a GOD subject file the corpus reads (never the test arr_1, arr_2)
UNWINDOWED = ("array", "god")  # kinds whose rows are samples already
CHUNK_BYTES = 256 << 20  # float64 bytes of a 4-D series read at once


@dataclass(frozen=True)
class Source:
    """One subject's file, described from its header.

    Attributes:
        name: the subject's name (HCP: its folder name; NIfTI, ``.npy`` and GOD: the path).
        kind: ``"hcp"``, ``"nifti"``, ``"array"`` or ``"god"``.
        path: the file.
        n_rows: TRs (``"hcp"``, ``"nifti"``) or samples (``"array"``, ``"god"``: the rows of ``arr_0``).
        n_voxels: voxels of a row (``"god"``: the ROI mask's count).
    """

    name: str
    kind: str
    path: Path
    n_rows: int
    n_voxels: int


# ----------------------------------------------------------------------------------------------------- HCP
def hcp_subject_files(root: str | Path, subjects: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """``(subject, <root>/<subject>/HCP_visual_voxel.npz)`` of the chosen subjects.

    Args:
        root: the folder holding one sub-folder per subject.
        subjects: subject folder names, in this order (default: every sub-folder holding the file, sorted).

    Raises:
        FileNotFoundError: ``root`` is not a folder, holds no subject file, or a named subject has none.
        ValueError: an empty or repeated ``subjects`` list.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"hcp_root '{root}' is not a folder")
    if subjects is None:
        names = sorted(p.name for p in root.iterdir() if (p / HCP_FILE).is_file())
        if not names:
            raise FileNotFoundError(f"hcp_root '{root}' holds no subject: no '<subject>/{HCP_FILE}' below it (the "
                                    "layout written by DC-MAE's data/HCP/preprocess_hcp.py)")
    else:
        names = [str(s) for s in subjects]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"subjects must be a non-empty list of distinct folder names, got {names!r}")
        missing = [n for n in names if not (root / n / HCP_FILE).is_file()]
        if missing:
            raise FileNotFoundError(f"subjects {missing} have no {HCP_FILE} in hcp_root '{root}' (expected e.g. "
                                    f"'{root / missing[0] / HCP_FILE}')")
    return [(name, root / name / HCP_FILE) for name in names]


def _member_header(npz: Any, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an ``.npz`` from its ``.npy`` header (the data is not read)."""
    with npz.zip.open(f"{key}.npy") as handle:
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(handle))
        if read_header is not None:
            shape, _, dtype = read_header(handle)
            return tuple(int(n) for n in shape), np.dtype(dtype)
    array = npz[key]  # a newer header version: read the array itself
    return tuple(array.shape), array.dtype


def plan_hcp(name: str, path: Path, rois: Sequence[str]) -> Source:
    """Describe one HCP subject file from the headers of its ROI arrays.

    Raises:
        FileFormatError: not a readable ``.npz``, or an ROI array is missing.
        ValueError: an ROI array that is not 2-D floating point with voxels, or ROIs of different TR counts.
    """
    with load_npz(path, HCP_WHAT, keys=rois) as npz, reading(path, NPZ_FORMAT, HCP_WHAT):
        headers = {roi: _member_header(npz, roi) for roi in rois}
    for roi, (shape, dtype) in headers.items():
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(f"{HCP_WHAT} '{path}': array '{roi}' has shape {shape}; expected (TRs, voxels) with "
                             "at least one voxel")
        if not np.issubdtype(dtype, np.floating):
            raise ValueError(f"{HCP_WHAT} '{path}': array '{roi}' has dtype {dtype}; expected floating point")
    trs = {roi: shape[0] for roi, (shape, _) in headers.items()}
    if len(set(trs.values())) > 1:
        raise ValueError(f"{HCP_WHAT} '{path}': the ROI arrays have different numbers of TRs {trs}; every ROI must "
                         "cover the same time points")
    return Source(name, "hcp", Path(path), trs[rois[0]], sum(shape[1] for shape, _ in headers.values()))


def read_hcp(source: Source, rois: Sequence[str]) -> np.ndarray:
    """The ROI arrays of one HCP subject, concatenated in ``rois`` order: float64 ``(TRs, voxels)``."""
    parts = []
    with load_npz(source.path, HCP_WHAT, keys=rois) as npz:
        for roi in rois:
            with reading(source.path, NPZ_FORMAT, HCP_WHAT):
                part = np.asarray(npz[roi], dtype=np.float64)
            check_finite(part, f"{HCP_WHAT} '{source.path}', array '{roi}'")
            parts.append(part)
    series = np.concatenate(parts, axis=1)
    _check_unchanged(series, source)
    return series


# ----------------------------------------------------------------------------------------------------- NIfTI
def read_mask(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A voxel mask: boolean ``(X, Y, Z)`` (nonzero = kept) and its affine.

    Raises:
        FileFormatError: not a readable NIfTI image.
        ValueError: not 3-D, NaN/Inf values, or no voxel kept.
    """
    affine = np.asarray(load_nifti(path, MASK_WHAT).affine, dtype=np.float64)
    values = load_nifti_array(path, MASK_WHAT)
    if values.ndim != 3:
        raise ValueError(f"nifti_mask '{path}' has shape {values.shape}; expected a 3-D volume (X, Y, Z)")
    if not np.issubdtype(values.dtype, np.number) or not np.isfinite(values).all():
        raise ValueError(f"nifti_mask '{path}' has dtype {values.dtype} or NaN/Inf values; expected finite numbers "
                         "(nonzero = voxel kept)")
    mask = values != 0
    if not mask.any():
        raise ValueError(f"nifti_mask '{path}' keeps no voxel (every value is 0)")
    return mask, affine


def plan_nifti(path: Path, mask: np.ndarray, affine: np.ndarray, mask_path: str | Path) -> Source:
    """Describe one 4-D NIfTI series from its header and check that it is on the mask's grid.

    Raises:
        FileFormatError: not a readable NIfTI image.
        ValueError: not 4-D, a non-real dtype, or a grid (shape or affine) other than the mask's.
    """
    img = load_nifti(path, NIFTI_WHAT)
    shape = tuple(int(n) for n in img.shape)
    if len(shape) != 4:
        raise ValueError(f"nifti_files: '{path}' has shape {shape}; expected a 4-D time series (X, Y, Z, T)")
    dtype = img.get_data_dtype()
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"nifti_files: '{path}' stores dtype {dtype}; expected real numbers")
    if shape[:3] != mask.shape:
        raise ValueError(f"nifti_files: '{path}' has the grid {shape[:3]} but nifti_mask '{mask_path}' has "
                         f"{mask.shape}; the mask must be on the series' grid")
    if not np.allclose(np.asarray(img.affine, dtype=np.float64), affine, atol=1e-4):
        raise ValueError(f"nifti_files: '{path}' has the affine {np.asarray(img.affine).round(4).tolist()} but "
                         f"nifti_mask '{mask_path}' has {affine.round(4).tolist()}; the mask must be on the "
                         "series' grid (resample one of them)")
    return Source(str(path), "nifti", Path(path), shape[3], int(mask.sum()))


def read_nifti(source: Source, mask: np.ndarray) -> np.ndarray:
    """The masked voxels of a 4-D series, read in chunks of TRs: float64 ``(TRs, voxels)``, voxels in C order."""
    img = load_nifti(source.path, NIFTI_WHAT)
    series = np.empty((source.n_rows, source.n_voxels), dtype=np.float64)
    chunk = max(1, CHUNK_BYTES // (8 * mask.size))
    for t0 in range(0, source.n_rows, chunk):
        with reading(source.path, "NIfTI", NIFTI_WHAT):
            block = np.asarray(img.dataobj[..., t0 : t0 + chunk], dtype=np.float64)
        series[t0 : t0 + block.shape[-1]] = block[mask].T
    check_finite(series, f"{NIFTI_WHAT} '{source.path}' (inside nifti_mask)")
    return series


# ----------------------------------------------------------------------------------------------------- .npy
def plan_array(path: Path) -> Source:
    """Describe one extra ``.npy`` matrix from its header (memory-mapped, not read).

    Raises:
        FileFormatError: not a readable ``.npy``.
        ValueError: not 2-D with samples and voxels, or not floating point.
    """
    array = load_npy(path, ARRAY_WHAT, mmap=True)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"extra_arrays: '{path}' has shape {array.shape}; expected (samples, voxels) with at least "
                         "one of each")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"extra_arrays: '{path}' has dtype {array.dtype}; expected floating point")
    return Source(str(path), "array", Path(path), int(array.shape[0]), int(array.shape[1]))


def read_array(source: Source) -> np.ndarray:
    """The samples of an extra ``.npy``: float64 ``(samples, voxels)``."""
    samples = np.asarray(load_npy(source.path, ARRAY_WHAT, mmap=True), dtype=np.float64)
    _check_unchanged(samples, source)
    check_finite(samples, f"extra_arrays: '{source.path}'", row="sample")
    return samples


# ----------------------------------------------------------------------------------------------------- GOD
def plan_god(path: Path, roi: str) -> Source:
    """Describe one GOD subject file (``sbj_{k}.npz``) from its ROI masks and the header of ``arr_0``.

    The data of ``arr_0`` is not read, and the test fields ``arr_1``, ``arr_2`` are never opened.

    Args:
        path: the subject file.
        roi: the key of its boolean ROI mask over the columns (e.g. ``"VC"``).

    Raises:
        FileFormatError: not a readable ``.npz``.
        ValueError: no ROI mask ``roi`` or one that is not a non-empty boolean vector
            (:func:`~brain2img.data.god.files.read_roi_masks`), no ``arr_0``, or an ``arr_0`` that is not a real
            numeric ``(rows >= 1, mask length)`` matrix; each error names the file and the field.
    """
    path = Path(path)
    mask, _ = read_roi_masks(path, roi)
    with load_npz(path, GOD_WHAT) as npz:
        if GOD_TRAIN not in npz.files:
            raise ValueError(f"{GOD_WHAT} '{path}' lacks the field(s) ['{GOD_TRAIN}']; it holds {npz.files}; "
                             f"expected ['{GOD_TRAIN}: {GOD_FIELDS[GOD_TRAIN]}']")
        shape, dtype = god_header(npz, path, GOD_TRAIN)
    real = np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)
    if len(shape) != 2 or shape[0] < 1 or shape[1] != len(mask) or not real:
        raise ValueError(f"{GOD_WHAT} '{path}': field '{GOD_TRAIN}' ({GOD_FIELDS[GOD_TRAIN]}) is {dtype} {shape}, "
                         f"expected a real numeric (rows, {len(mask)}) matrix with at least one row: one column per "
                         f"entry of the ROI mask '{roi}'")
    return Source(str(path), "god", path, int(shape[0]), int(mask.sum()))


def read_god(source: Source, roi: str) -> np.ndarray:
    """The training rows of a GOD subject file in the columns of its ROI mask: float64 ``(rows, mask count)``.

    Only the ROI masks and ``arr_0`` are read (never the test fMRI ``arr_1``, ``arr_2``).

    Raises:
        ValueError: NaN/Inf values in the ROI's columns of ``arr_0`` (the file, the field and the first row named).
        RuntimeError: the file changed since :func:`plan_god` described it.
    """
    mask, _ = read_roi_masks(source.path, roi)
    with load_npz(source.path, GOD_WHAT, keys=(GOD_TRAIN,)) as npz:
        train = god_member(npz, source.path, GOD_TRAIN)
    if train.ndim != 2 or train.shape[1] != len(mask):
        raise RuntimeError(f"'{source.path}' field '{GOD_TRAIN}' has shape {train.shape}, not (rows, {len(mask)}) "
                           "as when it was planned: it changed while the corpus was prepared")
    samples = train[:, mask].astype(np.float64)
    _check_unchanged(samples, source)
    return god_finite(samples, source.path, GOD_TRAIN, roi)


# ----------------------------------------------------------------------------------------------------- any
def read_source(source: Source, rois: Sequence[str], mask: np.ndarray | None, god_roi: str = "VC") -> np.ndarray:
    """The rows of any source (TRs or samples): float64 ``(n_rows, n_voxels)``.

    Args:
        source: from one of the ``plan_*`` functions.
        rois: the HCP arrays (``"hcp"`` sources).
        mask: the 3-D NIfTI mask (``"nifti"`` sources).
        god_roi: the ROI mask key of GOD subject files (``"god"`` sources).
    """
    if source.kind == "hcp":
        return read_hcp(source, rois)
    if source.kind == "nifti":
        assert mask is not None, "a NIfTI source needs its mask"
        return read_nifti(source, mask)
    if source.kind == "god":
        return read_god(source, god_roi)
    return read_array(source)


def _check_unchanged(values: np.ndarray, source: Source) -> None:
    if values.shape != (source.n_rows, source.n_voxels):
        raise RuntimeError(f"'{source.path}' holds {values.shape} values but its header said "
                           f"{(source.n_rows, source.n_voxels)}: it changed while the corpus was prepared")
