"""Reading the large arrays the Natural Scenes Dataset ships (betas per session, the stimulus brick) and the MindEye2
re-packaging of them, in chunks, with checks that name the file. Layouts and the voxel order are described in
:mod:`brain2img.data.nsd.files`."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from brain2img.data.nsd.files import N_STIMULI, READ_CHUNK
from brain2img.io import load_nifti, load_npy, open_hdf5, reading


# --------------------------------------------------------------------------------------------------- betas
def _check_betas_shape(shape: tuple[int, ...], expected: tuple[int, ...], path: Path, session: int,
                       what: str) -> None:
    if shape != expected:
        transposed = tuple(shape[::-1]) if len(shape) == 4 else None
        hint = f" (it looks transposed: {what} reversed)" if transposed is not None and transposed == expected else ""
        raise ValueError(f"betas file '{path}' (session {session}) has shape {shape}, expected {what} = {expected} "
                         f"from the ROI mask (X, Y, Z) and trials_per_session{hint}")


def _check_betas_dtype(dtype: np.dtype, path: Path, session: int) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"betas file '{path}' (session {session}) has dtype {dtype}, expected int16 (percent signal "
                         f"change x 300) or a float type")


def _check_finite(chunk: np.ndarray, path: Path, session: int, start: int) -> None:
    bad = ~np.isfinite(chunk)
    if bad.any():
        trial, voxel = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"betas file '{path}' (session {session}) has NaN or Inf betas in trial {start + trial} "
                         f"(0-based, within the session) at selected voxel {voxel}; NaN betas are not dropped "
                         f"silently: choose a ROI without them or fix the file")


def read_session_betas(path: str | Path, fmt: str, mask: np.ndarray, trials_per_session: int, session: int,
                       scale: float = 300.0) -> np.ndarray:
    """The masked betas of one session, read ``READ_CHUNK`` trials at a time, divided by ``scale``.

    Args:
        path: ``betas_sessionXX.hdf5`` (dataset ``betas``, ``(trials, Z, Y, X)``) or ``.nii.gz``
            (``(X, Y, Z, trials)``).
        fmt: ``"hdf5"`` or ``"nifti"``.
        mask: boolean ``(X, Y, Z)``; columns follow ``np.flatnonzero(mask)`` (C order of ``(X, Y, Z)``).
        trials_per_session: expected number of trials.
        session: session number, for messages.
        scale: raw values are divided by it (300 turns NSD's int16 into percent signal change).

    Returns:
        float64 ``(trials_per_session, n_voxels)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"betas file of session {session} not found: '{path}'")
    n_vox = int(mask.sum())
    out = np.empty((trials_per_session, n_vox), dtype=np.float64)
    if fmt == "hdf5":
        xyz = np.nonzero(mask)
        zyx_flat = np.ravel_multi_index((xyz[2], xyz[1], xyz[0]), mask.shape[::-1])
        what = f"NSD betas (session {session})"
        with open_hdf5(path, what) as f:
            if "betas" not in f:
                raise ValueError(f"betas file '{path}' (session {session}) has no dataset 'betas' (keys: {list(f)})")
            ds = f["betas"]
            _check_betas_shape(tuple(ds.shape), (trials_per_session, *mask.shape[::-1]), path, session,
                               "(trials, Z, Y, X)")
            _check_betas_dtype(ds.dtype, path, session)
            for start in range(0, trials_per_session, READ_CHUNK):
                with reading(path, "HDF5", what):
                    chunk = ds[start : start + READ_CHUNK]
                out[start : start + len(chunk)] = chunk.reshape(len(chunk), -1)[:, zyx_flat]
    elif fmt == "nifti":
        what = f"NSD betas (session {session})"
        img = load_nifti(path, what, keep_file_open=True)  # chunks are read in order: one pass through the gzip stream
        _check_betas_shape(tuple(img.shape), (*mask.shape, trials_per_session), path, session, "(X, Y, Z, trials)")
        _check_betas_dtype(img.get_data_dtype(), path, session)
        for start in range(0, trials_per_session, READ_CHUNK):
            stop = min(start + READ_CHUNK, trials_per_session)
            with reading(path, "NIfTI", what):
                chunk = np.asarray(img.dataobj[..., start:stop])  # raw stored values (scaling slope applied if set)
            out[start:stop] = chunk[mask].T
    else:
        raise ValueError(f"betas format must be 'hdf5' or 'nifti', got '{fmt}'")
    out /= scale
    for start in range(0, trials_per_session, READ_CHUNK):
        _check_finite(out[start : start + READ_CHUNK], path, session, start)
    return out


# --------------------------------------------------------------------------------------------------- stimuli
def _check_ids(ids: np.ndarray, n_images: int, path: Path, key: str) -> None:
    bad = ids[(ids < 0) | (ids >= min(n_images, N_STIMULI))]
    if len(bad):
        raise ValueError(f"73k id {int(bad[0])} (0-based) has no image: '{path}' dataset '{key}' holds {n_images} "
                         f"images (NSD has {N_STIMULI}; valid ids are 0..{min(n_images, N_STIMULI) - 1})")


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square uint8 ``(S, S, 3)`` image to ``(size, size, 3)`` with PIL bicubic resampling."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def _output(out: np.ndarray | None, n: int, size: int) -> np.ndarray:
    if out is None:
        return np.empty((n, size, size, 3), dtype=np.uint8)
    if out.shape != (n, size, size, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(n, size, size, 3)}, got {out.dtype} {out.shape}")
    return out


def read_stimuli(path: str | Path, ids: np.ndarray, size: int, key: str = "imgBrick", out: np.ndarray | None = None
                 ) -> np.ndarray:
    """Read the stimuli with the given 0-based 73k ids from ``nsd_stimuli.hdf5`` and resize them.

    Only the requested images are read, ``READ_CHUNK`` at a time.

    Args:
        path: the stimulus hdf5.
        ids: 0-based 73k ids.
        size: output side in pixels (PIL bicubic).
        key: the dataset.
        out: optional uint8 ``(len(ids), size, size, 3)`` array (e.g. a memory map) to fill.

    Returns:
        uint8 ``(len(ids), size, size, 3)`` in the order of ``ids``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NSD stimulus file not found: '{path}'")
    ids = np.asarray(ids, dtype=np.int64)
    out = _output(out, len(ids), size)
    with open_hdf5(path, "NSD stimuli") as f:
        if key not in f:
            raise ValueError(f"stimulus file '{path}' has no dataset '{key}' (keys: {list(f)})")
        ds = f[key]
        if ds.ndim != 4 or ds.shape[1] != ds.shape[2] or ds.shape[3] != 3 or ds.dtype != np.uint8:
            raise ValueError(f"stimulus file '{path}' dataset '{key}' has shape {ds.shape} dtype {ds.dtype}, expected "
                             f"(n_images, S, S, 3) uint8 (NSD: ({N_STIMULI}, 425, 425, 3))")
        _check_ids(ids, ds.shape[0], path, key)
        _read_sorted(ds, ids, out, lambda block: [resize_square(im, size) for im in block], path, "NSD stimuli")
    return out


def _read_sorted(ds: h5py.Dataset, ids: np.ndarray, out: np.ndarray, convert, path: Path, what: str) -> None:
    """Fill ``out[i]`` with ``convert(ds[ids])[i]``, reading in increasing id order (h5py needs it); a read that
    fails names ``path`` (``what`` it is)."""
    order = np.argsort(ids, kind="stable")
    for start in range(0, len(ids), READ_CHUNK):
        pos = order[start : start + READ_CHUNK]
        uniq, inverse = np.unique(ids[pos], return_inverse=True)
        with reading(path, "HDF5", what):
            raw = ds[uniq]
        block = convert(raw)
        for j, p in enumerate(pos):
            out[p] = block[inverse[j]]


def read_mindeye2_images(path: str | Path, ids: np.ndarray, size: int, key: str = "images",
                         out: np.ndarray | None = None) -> np.ndarray:
    """Read MindEye2's ``coco_images_224_float16.hdf5`` (``(73000, 3, 224, 224)`` float16 in ``[0, 1]``) as uint8
    ``(len(ids), size, size, 3)`` (``round(255 x)``, then PIL bicubic if ``size`` differs), into ``out`` if given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MindEye2 image file not found: '{path}'")
    ids = np.asarray(ids, dtype=np.int64)
    out = _output(out, len(ids), size)

    def convert(block: np.ndarray) -> list[np.ndarray]:
        x = block.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"image file '{path}' dataset '{key}' holds values outside [0, 1] (or NaN); expected "
                             f"float images in [0, 1]")
        u8 = np.round(x * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)
        return [im if im.shape[0] == size else resize_square(im, size) for im in u8]

    with open_hdf5(path, "MindEye2 images") as f:
        if key not in f:
            raise ValueError(f"image file '{path}' has no dataset '{key}' (keys: {list(f)})")
        ds = f[key]
        if ds.ndim != 4 or ds.shape[1] != 3 or ds.shape[2] != ds.shape[3]:
            raise ValueError(f"image file '{path}' dataset '{key}' has shape {ds.shape}, expected (n_images, 3, S, S) "
                             f"(MindEye2: ({N_STIMULI}, 3, 224, 224) float16)")
        _check_ids(ids, ds.shape[0], path, key)
        _read_sorted(ds, ids, out, convert, path, "MindEye2 images")
    return out


# --------------------------------------------------------------------------------------------------- MindEye2
def mindeye2_betas_shape(path: str | Path, key: str = "betas") -> tuple[int, int]:
    """``(n_rows, n_voxels)`` of a MindEye2 betas hdf5 (header only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MindEye2 betas file not found: '{path}'")
    with open_hdf5(path, "MindEye2 betas") as f:
        if key not in f:
            raise ValueError(f"MindEye2 betas file '{path}' has no dataset '{key}' (keys: {list(f)})")
        shape = tuple(f[key].shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"MindEye2 betas file '{path}' dataset '{key}' has shape {shape}, expected (n_trials, "
                         f"n_voxels)")
    return int(shape[0]), int(shape[1])


def read_mindeye2_behav(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The 0-based 73k id and the betas row of every trial from a behaviour ``.npy``.

    Accepts ``(n, 2)`` = [73k id, betas row] or MindEye2's behaviour array ``(n, 1, k)`` / ``(n, k)`` with ``k >= 6``
    (73k id in column 0, betas row in column 5).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MindEye2 behaviour file not found: '{path}'")
    arr = load_npy(path, "MindEye2 behaviour")
    if arr.ndim == 3 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 2 or len(arr) == 0 or (arr.shape[1] != 2 and arr.shape[1] < 6):
        raise ValueError(f"behaviour file '{path}' has shape {arr.shape}, expected (n_trials, 2) = [73k id, betas row]"
                         f" or MindEye2's (n_trials, 1, 17) (73k id in column 0, betas row in column 5)")
    cols = arr[:, [0, 1]] if arr.shape[1] == 2 else arr[:, [0, 5]]
    values = cols.astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        what = ("73k id", "betas row")[j]
        raise ValueError(f"behaviour file '{path}' trial {i}: {what} = {values[i, j]} is not an index >= 0 (MindEye2 "
                         f"writes -1 for a missing value)")
    ids, rows = values[:, 0].astype(np.int64), values[:, 1].astype(np.int64)
    uniq, counts = np.unique(rows, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"behaviour file '{path}': betas row {int(uniq[counts > 1][0])} is listed for several trials")
    return ids, rows


def read_mindeye2_rows(path: str | Path, rows: np.ndarray, trials_per_session: int, key: str = "betas"
                       ) -> np.ndarray:
    """Rows of a MindEye2 betas hdf5 as float64 ``(len(rows), n_voxels)``, in the given order (read in chunks).

    Args:
        path: ``betas_all_subj0S_fp32_renorm.hdf5``.
        rows: rows to read.
        trials_per_session: rows per session (row ``r`` is trial ``r % n`` of session ``r // n + 1``), for messages.
        key: the dataset.
    """
    path = Path(path)
    rows = np.asarray(rows, dtype=np.int64)
    with open_hdf5(path, "MindEye2 betas") as f:
        ds = f[key]
        if len(rows) and rows.max() >= ds.shape[0]:
            raise ValueError(f"MindEye2 betas file '{path}' dataset '{key}' has {ds.shape[0]} rows, but the behaviour "
                             f"lists row {int(rows.max())}")
        out = np.empty((len(rows), ds.shape[1]), dtype=np.float64)
        _read_sorted(ds, rows, out, lambda block: block.astype(np.float64), path, "MindEye2 betas")
    bad = ~np.isfinite(out)
    if bad.any():
        i, v = (int(x) for x in np.argwhere(bad)[0])
        r = int(rows[i])
        raise ValueError(f"MindEye2 betas file '{path}' dataset '{key}' has NaN or Inf in row {r} (session "
                         f"{r // trials_per_session + 1}, trial {r % trials_per_session}) at voxel {v}")
    return out
