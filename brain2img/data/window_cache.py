"""The memory-mapped window cache of an unlabelled corpus (raw EEG windows, fMRI samples), and the corpus base that
serves it.

One folder holding ``windows.npy`` (float32 ``(n_windows, *brain_shape)``, written through
``np.lib.format.open_memmap``), ``subjects.npy``, ``sources.npy`` (window -> recording index), ``starts.npy``
(window -> first sample at the target rate) and ``manifest.json`` (with the sha256 of each array). It is written in a
temporary sibling folder that is renamed into place once complete (:func:`brain2img.io.staging_folder`), so a folder
with the final name is always whole. :class:`CachedCorpusDataModule` opens such a folder, splits it and serves the
windows memory-mapped (:class:`CachedWindows`).
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from brain2img.data import schema
from brain2img.data.corpus import CorpusDataModule
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


class CachedWindows(Dataset):
    """Windows ``indices`` of a cache; the memmap is opened lazily in each process (never pickled to workers)."""

    def __init__(self, folder: Path, indices: np.ndarray, subjects: np.ndarray) -> None:
        self.path = Path(folder) / WINDOWS_FILE
        self.indices = np.asarray(indices, dtype=np.int64)
        self.subjects = subjects
        self._windows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        if self._windows is None:
            self._windows = np.load(self.path, mmap_mode="r")
        j = int(self.indices[i])
        return {schema.BRAIN: torch.from_numpy(np.array(self._windows[j], dtype=np.float32)),
                schema.SUBJECT: int(self.subjects[j]), schema.INDEX: int(i)}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_windows": None}


class CachedCorpusDataModule(CorpusDataModule):
    """A corpus prepared once into a window cache (:meth:`prepare_data` writes it) and served memory-mapped.

    A subclass implements :attr:`cache_folder`, :meth:`config` (recorded in the manifest: a folder built with
    another config is refused), :meth:`_build` (writes the folder) and :meth:`_split`; :meth:`prepare_data` builds or
    verifies the folder and records the split, :meth:`setup` opens the cache and splits it.
    """

    corpus_label = "corpus"  #: how errors name the cache folder (e.g. "window cache", "fMRI corpus folder")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: WindowCache | None = None
        self._splits: dict[str, np.ndarray] | None = None
        self._verified: Path | None = None  # the folder whose checksums this process checked

    @property
    @abstractmethod
    def cache_folder(self) -> Path:
        """This config's cache folder."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The settings that determine the cache (stored in its manifest)."""

    @abstractmethod
    def _build(self, folder: Path) -> None:
        """Write the cache into ``folder`` (through :class:`WindowCacheWriter` or the same layout)."""

    @abstractmethod
    def _split(self, cache: WindowCache) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Window indices of ``"train"`` and ``"val"``, and a description of the split."""

    def prepare_data(self) -> None:
        """Build the cache unless a complete one exists (then verify its checksums, once per process); record this
        seed's split in its manifest."""
        folder = self.cache_folder
        if not folder.is_dir():
            self._build(folder)
        elif self._verified != folder:
            open_window_cache(folder, verify=True)
        self._verified = folder
        cache = open_window_cache(folder, verify=False)
        _, info = self._split(cache)
        key = f"seed={self.seed},val_fraction={self.val_fraction}"
        if cache.manifest.get("splits", {}).get(key) != info:
            manifest = dict(cache.manifest)
            manifest["splits"] = {**manifest.get("splits", {}), key: info}
            write_json_atomic(folder / MANIFEST_NAME, manifest)

    def setup(self, stage: str | None = None) -> None:
        """Open the cached windows read-only (building the cache first if it does not exist) and split them."""
        if self._cache is not None:
            return
        folder = self.cache_folder
        if not folder.is_dir():
            self.prepare_data()
        cache = open_window_cache(folder, verify=False)
        if cache.manifest["config"] != self.config() or tuple(cache.manifest["shape"][1:]) != self.brain_shape:
            raise ValueError(f"{self.corpus_label} '{folder}' was built with {cache.manifest['config']}, which "
                             f"differs from this datamodule's {self.config()}; delete the folder")
        self._splits, _ = self._split(cache)
        self._cache = cache

    @property
    def split_indices(self) -> dict[str, np.ndarray]:
        """Cached-window indices of ``"train"`` and ``"val"`` (position ``index`` of a sample -> window)."""
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    def windows(self, split: str) -> CachedWindows:
        """The windows of ``"train"`` or ``"val"`` (empty val when ``val_fraction=0``), memory-mapped lazily."""
        indices = self.split_indices[split]
        assert self._cache is not None
        return CachedWindows(self._cache.folder, indices, self._cache.subjects)
