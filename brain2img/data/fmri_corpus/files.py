"""Readers of the fMRI corpus's sources: HCP visual-cortex ``.npz`` files, 4-D NIfTI series with a mask, ``.npy``.

Every source is one subject. :func:`plan_hcp`, :func:`plan_nifti` and :func:`plan_array` describe it from its
header alone (a :class:`Source`: TRs or samples, voxels), so every shape error comes before any data is read and the
corpus's voxel count is known before preparation; :func:`read_source` then reads its values, checked for NaN/Inf.
Files are opened through :mod:`brain2img.io`, so a missing, empty, truncated or foreign file is an error naming the
file, the format and the cause; every field is checked, and a value that does not fit is an error naming the file
and the field, never a silent fix.

- HCP (DC-MAE ``data/HCP/preprocess_hcp.py`` writes, ``code/dataset.py::hcp_dataset`` reads):
  ``<root>/<subject>/HCP_visual_voxel.npz`` with float arrays ``V1``, ``V2``, ``V3``, ``V4`` of shape
  ``(1200 TRs, voxels)`` (the HCP-MMP areas 1/181, 4/184, 5/185, 6/186 of the resting-state CIFTI series). The
  reference's ``'VC'`` concatenates them in that order along the voxels.
- NIfTI: a 4-D series ``(X, Y, Z, T)`` and a 3-D mask on the same grid (shape and affine); the voxels are the
  mask's nonzero ones in C order of ``(X, Y, Z)``. The series is read in chunks of TRs (a 4-D run can be GBs).
- Extra ``.npy`` matrices ``(samples, voxels)`` of one subject each, taken as samples (no windowing), e.g. GOD
  training fMRI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.fmri_corpus.prep import check_finite
from brain2img.io import load_nifti, load_nifti_array, load_npy, load_npz, reading

HCP_FILE = "HCP_visual_voxel.npz"
HCP_ROIS = ("V1", "V2", "V3", "V4")
HCP_WHAT = "HCP visual-cortex time series"
NIFTI_WHAT = "fMRI time series (4-D NIfTI)"
MASK_WHAT = "voxel mask (3-D NIfTI, nonzero = kept)"
ARRAY_WHAT = "extra fMRI samples (.npy, samples x voxels)"
NPZ_FORMAT = "NumPy .npz"
CHUNK_BYTES = 256 << 20  # float64 bytes of a 4-D series read at once


@dataclass(frozen=True)
class Source:
    """One subject's file, described from its header.

    Attributes:
        name: the subject's name (HCP: its folder name; NIfTI and ``.npy``: the path).
        kind: ``"hcp"``, ``"nifti"`` or ``"array"``.
        path: the file.
        n_rows: TRs (``"hcp"``, ``"nifti"``) or samples (``"array"``).
        n_voxels: voxels of a row.
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


# ----------------------------------------------------------------------------------------------------- any
def read_source(source: Source, rois: Sequence[str], mask: np.ndarray | None) -> np.ndarray:
    """The rows of any source (TRs or samples): float64 ``(n_rows, n_voxels)``."""
    if source.kind == "hcp":
        return read_hcp(source, rois)
    if source.kind == "nifti":
        assert mask is not None, "a NIfTI source needs its mask"
        return read_nifti(source, mask)
    return read_array(source)


def _check_unchanged(values: np.ndarray, source: Source) -> None:
    if values.shape != (source.n_rows, source.n_voxels):
        raise RuntimeError(f"'{source.path}' holds {values.shape} values but its header said "
                           f"{(source.n_rows, source.n_voxels)}: it changed while the corpus was prepared")
