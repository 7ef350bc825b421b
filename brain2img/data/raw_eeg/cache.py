"""The memory-mapped window cache of a raw-EEG corpus.

One folder holding ``windows.npy`` (float32 ``(n_windows, n_channels, n_times)``, written through
``np.lib.format.open_memmap``), ``subjects.npy``, ``sources.npy`` (window -> recording index), ``starts.npy``
(window -> first sample at the target rate) and ``manifest.json`` (with the sha256 of each array). It is written in a
temporary sibling folder that is renamed into place once complete (:func:`brain2img.io.staging_folder`), so a folder
with the final name is always whole.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.manifest import MANIFEST_NAME, verify_checksums
from brain2img.io import read_json, sha256_file, staging_folder, write_json_atomic

WINDOWS_FILE = "windows.npy"
SUBJECTS_FILE = "subjects.npy"
SOURCES_FILE = "sources.npy"
STARTS_FILE = "starts.npy"
ARRAY_FILES = (WINDOWS_FILE, SUBJECTS_FILE, SOURCES_FILE, STARTS_FILE)


class WindowCacheWriter:
    """Writes a window cache into a temporary folder that becomes ``folder`` when the block ends after a :meth:`commit`.

    Use as a context manager; leaving the block without a commit (an exception) deletes the temporary folder, so
    ``folder`` either does not exist or is complete. If another process committed ``folder`` first, that one is kept.

    Args:
        folder: final cache folder (must not exist yet).
        n_windows: total number of windows that will be written.
        n_channels: rows of a window.
        n_times: samples of a window.
    """

    def __init__(self, folder: str | Path, n_windows: int, n_channels: int, n_times: int) -> None:
        if n_windows < 1:
            raise ValueError(f"a window cache needs at least one window, got {n_windows}")
        self.folder = Path(folder)
        self.shape = (int(n_windows), int(n_channels), int(n_times))
        self.filled = 0
        self.tmp: Path | None = None
        self._stage = ExitStack()
        self._committed = False

    def __enter__(self) -> WindowCacheWriter:
        self.tmp = self._stage.enter_context(staging_folder(self.folder, MANIFEST_NAME))
        self.windows = np.lib.format.open_memmap(self.tmp / WINDOWS_FILE, mode="w+", dtype=np.float32,
                                                 shape=self.shape)
        n = self.shape[0]
        self.subjects = np.full(n, -1, dtype=np.int64)
        self.sources = np.full(n, -1, dtype=np.int64)
        self.starts = np.full(n, -1, dtype=np.int64)
        return self

    def write(self, windows: np.ndarray, subject: int, source: int, starts: np.ndarray) -> None:
        """Append the windows of one recording (or a part of it), with their subject, recording index and starts."""
        k = len(windows)
        if tuple(windows.shape[1:]) != self.shape[1:] or len(starts) != k:
            raise ValueError(f"expected windows (k, {self.shape[1]}, {self.shape[2]}) and k starts, got "
                             f"{tuple(windows.shape)} and {len(starts)}")
        if self.filled + k > self.shape[0]:
            raise ValueError(f"writing {k} windows at {self.filled} overflows the {self.shape[0]} planned")
        span = slice(self.filled, self.filled + k)
        self.windows[span] = windows
        self.subjects[span], self.sources[span], self.starts[span] = subject, source, starts
        self.filled += k

    def commit(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Flush, checksum and write ``manifest.json`` (``manifest`` plus ``"checksums"``, ``"shape"``); the folder is
        renamed into place when the ``with`` block ends.

        Returns:
            The manifest as written.
        """
        assert self.tmp is not None, "use WindowCacheWriter as a context manager"
        if self.filled != self.shape[0]:
            raise RuntimeError(f"window cache incomplete: {self.filled} of {self.shape[0]} planned windows written")
        self.windows.flush()
        del self.windows
        for name, arr in ((SUBJECTS_FILE, self.subjects), (SOURCES_FILE, self.sources), (STARTS_FILE, self.starts)):
            np.save(self.tmp / name, arr)
        manifest = {**manifest, "shape": list(self.shape),
                    "checksums": {name: sha256_file(self.tmp / name) for name in ARRAY_FILES}}
        write_json_atomic(self.tmp / MANIFEST_NAME, manifest)
        self._committed = True
        return manifest

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool | None:
        self.__dict__.pop("windows", None)  # close the memmap before its folder is published or deleted
        if exc_type is None and not self._committed:
            err = RuntimeError(f"window cache '{self.folder}' was left without commit(): nothing was published")
            self._stage.__exit__(RuntimeError, err, None)  # the staging folder is removed on any exception
            raise err
        return self._stage.__exit__(exc_type, exc, tb)


@dataclass
class WindowCache:
    """An opened window cache: ``windows`` memory-mapped read-only, the small per-window arrays in memory."""

    folder: Path
    windows: np.ndarray
    subjects: np.ndarray
    sources: np.ndarray
    starts: np.ndarray
    manifest: dict[str, Any]


def read_cache_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of a cache folder, with clear errors when missing or invalid."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"window cache manifest not found: '{path}'")
    manifest = read_json(path, f"window cache manifest (delete '{folder}' to rebuild it)")
    missing = [k for k in ("shape", "checksums", "files", "config") if k not in manifest]
    if missing:
        raise ValueError(f"window cache manifest '{path}' lacks the keys {missing}; delete '{folder}' to rebuild it")
    return manifest


def open_window_cache(folder: str | Path, verify: bool = True) -> WindowCache:
    """Open a cache folder written by :class:`WindowCacheWriter`.

    Args:
        folder: the cache folder.
        verify: check the sha256 of every array against the manifest (reads every byte once).

    Raises:
        FileNotFoundError / ValueError: missing manifest or array, checksum mismatch, or arrays that disagree with the
            manifest's shape.
    """
    folder = Path(folder)
    manifest = read_cache_manifest(folder)
    if verify:
        verify_checksums(folder, manifest["checksums"])
    windows = np.load(folder / WINDOWS_FILE, mmap_mode="r")
    small = [np.load(folder / name) for name in (SUBJECTS_FILE, SOURCES_FILE, STARTS_FILE)]
    shape = tuple(manifest["shape"])
    if windows.shape != shape or windows.dtype != np.float32 or any(a.shape != shape[:1] for a in small):
        raise ValueError(f"window cache '{folder}': arrays {windows.dtype}{windows.shape}, "
                         f"{[a.shape for a in small]} disagree with the manifest shape {shape}; delete the folder")
    return WindowCache(folder, windows, *small, manifest)
