"""The prepared folder of the fMRI corpus: the window cache's layout (:mod:`brain2img.data.window_cache`), with 1-D
samples.

The folder holds ``windows.npy`` (float32 ``(n_samples, n_voxels)``: the averaged, z-scored, wrap-padded windows,
written subject by subject through ``np.lib.format.open_memmap``), ``subjects.npy`` and ``sources.npy`` (sample ->
subject / file index, the same here: one file per subject), ``starts.npy`` (sample -> first TR of its window; for an
extra ``.npy`` or a GOD file, its row) and ``manifest.json`` (config, one record per file under ``"files"``,
``"shape"`` and the sha256 of each array). It is opened and checked by
:func:`~brain2img.data.window_cache.open_window_cache` and served by
:class:`~brain2img.data.window_cache.CachedWindows`. It is written in a staging folder that is renamed into place
when complete (:func:`brain2img.io.staging_folder`): a folder with the final name is always whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.manifest import MANIFEST_NAME
from brain2img.data.window_cache import ARRAY_FILES, SOURCES_FILE, STARTS_FILE, SUBJECTS_FILE, WINDOWS_FILE
from brain2img.io import sha256_file, staging_folder, write_json_atomic


def write_cache(folder: Path, shape: tuple[int, int], blocks: Iterable[tuple[np.ndarray, int, np.ndarray]],
                manifest: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Write a corpus folder from the samples of each file, in order, and publish it as ``folder``.

    Args:
        folder: the final folder (must not exist yet).
        shape: ``(n_samples, n_voxels)`` of all samples.
        blocks: for each file in turn, ``(samples (k, n_voxels) float32, file index, starts (k,))``.
        manifest: called once every block is written; its dict (which may describe what the blocks found) is
            saved with ``"shape"`` and ``"checksums"`` added.

    Returns:
        The manifest as written.

    Raises:
        ValueError: a block of the wrong width, or blocks that do not fill ``shape`` exactly; nothing is published.
    """
    n = int(shape[0])
    with staging_folder(folder, MANIFEST_NAME) as tmp:
        index = {name: np.full(n, -1, dtype=np.int64) for name in (SUBJECTS_FILE, SOURCES_FILE, STARTS_FILE)}
        windows = np.lib.format.open_memmap(tmp / WINDOWS_FILE, mode="w+", dtype=np.float32, shape=tuple(shape))
        filled = 0
        try:
            for samples, source, starts in blocks:
                k = len(samples)
                if samples.shape[1:] != (shape[1],) or len(starts) != k or filled + k > n:
                    raise ValueError(f"block {samples.shape} with {len(starts)} starts does not fit at sample "
                                     f"{filled} of a corpus of shape {tuple(shape)}")
                windows[filled : filled + k] = samples
                index[SUBJECTS_FILE][filled : filled + k] = source
                index[SOURCES_FILE][filled : filled + k] = source
                index[STARTS_FILE][filled : filled + k] = starts
                filled += k
            windows.flush()
        finally:
            del windows  # close the memmap before its folder is published or removed
        if filled != n:
            raise ValueError(f"the files gave {filled} samples but {n} were planned from their headers")
        for name, values in index.items():
            np.save(tmp / name, values)
        out = {**manifest(), "shape": [int(s) for s in shape],
               "checksums": {name: sha256_file(tmp / name) for name in ARRAY_FILES}}
        write_json_atomic(tmp / MANIFEST_NAME, out)
    return out
