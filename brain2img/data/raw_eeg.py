"""Unlabelled raw EEG recordings (EDF, BDF, FIF, BrainVision) as fixed-size windows for masked-signal pre-training.

This is the open counterpart of DreamDiffusion's unreleased pre-training corpus (reference spec section 1.2: MOABB
recordings, 5-95 Hz, channels replicated to 128, windows of 512 samples). Each recording is read with MNE, reduced to
its EEG channels (or ``picks``), band-passed (MNE's zero-phase FIR), resampled to ``sfreq`` (MNE's FFT method, padded
so that no fractional-sample shift occurs, see :func:`resample_npad`), cut into windows of ``n_times`` samples,
z-scored, mapped to ``n_channels`` rows, and written to one memory-mapped float32 array (see
:mod:`brain2img.data.eeg_windows`).

Samples carry no image: ``{"brain": float32 (n_channels, n_times), "subject": int64, "index": int64}``, where
``index`` is the position in the split (:attr:`RawEEGDataModule.split_indices` maps it to the cached window).

Differences from DreamDiffusion's loader, by design: windows are cut deterministically (every ``window_stride``
samples) instead of one random crop per file and epoch; a recording shorter than a window is an error instead of being
stretched by interpolation; more channels than ``n_channels`` is an error instead of a random block (use ``picks``);
the ``/10`` scaling of the reference is not applied (z-scoring is the default normalisation).
"""

from __future__ import annotations

import glob
import hashlib
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import mne
import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from brain2img.data import schema
from brain2img.data.eeg_windows import (
    CHANNEL_POLICIES,
    WINDOWS_FILE,
    ZSCORE_MODES,
    WindowCache,
    WindowCacheWriter,
    channel_layout,
    check_finite,
    count_windows,
    cut_windows,
    map_channels,
    open_window_cache,
    split_windows,
    window_starts,
    zscore,
)
from brain2img.data.splits import MANIFEST_NAME, config_hash, sha256_file, write_json_atomic

SUPPORTED_EXTENSIONS = (".edf", ".bdf", ".fif", ".fif.gz", ".vhdr")
LIST_EXTENSION = ".txt"
SUBJECT_FROM = ("file", "parent")
FORMAT_VERSION = 1
_CHUNK = 256  # windows processed at once


# ----------------------------------------------------------------------------------------------------- files
def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def _expand(entry: str, origin: str) -> list[Path]:
    """One path or glob pattern -> existing files, with errors naming the entry."""
    if glob.has_magic(entry) and not Path(entry).is_file():  # a real file whose name has '[' is not a pattern
        found = [Path(p) for p in glob.glob(entry, recursive=True) if Path(p).is_file()]
        if not found:
            raise FileNotFoundError(f"the pattern '{entry}'{origin} matches no file")
        return found
    path = Path(entry)
    if path.is_dir():
        raise ValueError(f"'{entry}'{origin} is a folder; give files or a pattern such as '{path / '**' / '*.edf'}'")
    if not path.is_file():
        raise FileNotFoundError(f"EEG recording not found: '{entry}'{origin}")
    return [path]


def resolve_files(files: list[str] | str) -> list[Path]:
    """Resolve recording paths, glob patterns (``**`` recursive) or one ``.txt`` file listing them, one a line.

    In a list file, blank lines and lines starting with ``#`` are ignored and relative paths are relative to the list
    file's folder. The result is sorted, absolute and without duplicates.

    Raises:
        FileNotFoundError: a missing file, list file, or a pattern that matches nothing (named).
        ValueError: no entry, a folder, or a file whose extension is not one of :data:`SUPPORTED_EXTENSIONS`.
    """
    entries: list[tuple[str, str]] = []
    items = [files] if isinstance(files, (str, Path)) else list(files)
    for item in items:
        item = str(item)
        if item.lower().endswith(LIST_EXTENSION):
            listing = Path(item)
            if not listing.is_file():
                raise FileNotFoundError(f"file list not found: '{item}'")
            for number, line in enumerate(listing.read_text().splitlines(), 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    full = line if Path(line).is_absolute() else str(listing.parent / line)
                    entries.append((full, f" (line {number} of '{item}')"))
        else:
            entries.append((item, ""))
    if not entries:
        raise ValueError(f"`files` names no EEG recording (got {files!r})")
    resolved: set[Path] = set()
    for entry, origin in entries:
        for path in _expand(entry, origin):
            if _extension(path) not in SUPPORTED_EXTENSIONS:
                raise ValueError(f"unsupported EEG file '{path}'{origin}: extension '{_extension(path)}', expected one "
                                 f"of {SUPPORTED_EXTENSIONS}")
            resolved.add(path.resolve())
    return sorted(resolved)


def recording_checksum(path: str | Path) -> str:
    """sha256 of a recording; for BrainVision, of the header together with the data and marker files it names."""
    path = Path(path)
    if _extension(path) != ".vhdr":
        return sha256_file(path)
    text = path.read_text(errors="replace")
    digest = hashlib.sha256(sha256_file(path).encode())
    for key in ("DataFile", "MarkerFile"):
        match = re.search(rf"^\s*{key}\s*=\s*(.+?)\s*$", text, flags=re.MULTILINE)
        if match:
            companion = path.parent / match.group(1)
            if not companion.is_file():
                raise FileNotFoundError(f"BrainVision header '{path}' names {key}='{match.group(1)}', which does not "
                                        f"exist next to it")
            digest.update(sha256_file(companion).encode())
    return digest.hexdigest()


def read_recording(path: Path, preload: bool) -> mne.io.BaseRaw:
    """``mne.io.read_raw`` quietly; any failure becomes a ``ValueError`` naming the file (MNE's error chained)."""
    try:
        return mne.io.read_raw(path, preload=preload, verbose="error")
    except Exception as err:  # MNE raises many types for unreadable files
        raise ValueError(f"cannot read EEG recording '{path}' with MNE: {type(err).__name__}: {err}") from err


def pick_channels(raw: mne.io.BaseRaw, picks: list[str] | None, path: Path) -> mne.io.BaseRaw:
    """Keep ``picks`` (in that order) or, by default, the EEG channels not marked bad; in place."""
    if picks is None:
        idx = mne.pick_types(raw.info, eeg=True, exclude="bads")
        if len(idx) == 0:
            types = sorted(set(raw.get_channel_types()))
            raise ValueError(f"recording '{path}' has no good EEG channel (channel types: {types}); name the "
                             f"channels to use with `picks`")
        return raw.pick(idx)
    missing = [name for name in picks if name not in raw.ch_names]
    if missing:
        raise ValueError(f"recording '{path}' lacks the picked channel(s) {missing} (it has {len(raw.ch_names)}: "
                         f"{raw.ch_names[:20]}{' ...' if len(raw.ch_names) > 20 else ''})")
    return raw.pick(list(picks))


def resample_npad(sfreq_in: float, sfreq_out: float, minimum: int = 100) -> int:
    """Padding (samples each side) for MNE's FFT resampling that keeps sample 0 at time 0.

    MNE trims ``round(npad * ratio)`` output samples from the left; with its default ``npad="auto"`` that product is
    usually fractional, which shifts the whole resampled recording by up to half an output sample (0.4 samples,
    about 0.25 rad of a 10 Hz wave, from 500 to 100 Hz). The smallest multiple of the ratio's denominator that is at
    least ``minimum`` makes the trim exact; for rates without a small common denominator, no padding (0).
    """
    ratio = Fraction(sfreq_out).limit_denominator(10_000) / Fraction(sfreq_in).limit_denominator(10_000)
    q = ratio.denominator
    return 0 if q > 100_000 else q * -(-minimum // q)


def resampled_length(n_samples: int, sfreq_in: float, sfreq_out: float) -> int:
    """Samples after resampling ``n_samples`` from ``sfreq_in`` to ``sfreq_out`` (MNE's rounding)."""
    return int(n_samples) if sfreq_in == sfreq_out else max(int(round(n_samples * sfreq_out / sfreq_in)), 1)


# ----------------------------------------------------------------------------------------------------- dataset
class RawEEGWindows(Dataset):
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


# ----------------------------------------------------------------------------------------------------- datamodule
class RawEEGDataModule(LightningDataModule):
    """Unlabelled EEG windows from raw recordings, cached once as a memory-mapped array, split by recording.

    ``prepare_data`` builds (or reuses) the cache folder ``cache_dir/raw_eeg-<hash>``, the hash covering the
    preprocessing settings, the sha256 of every recording and the subject of each; a reused folder's arrays are checked
    against their sha256 and no recording is read. ``setup`` opens the windows read-only and splits them into
    train/val by recording (seeded; one recording: a contiguous block, see
    :func:`~brain2img.data.eeg_windows.split_windows`); the split is recorded in the cache manifest.

    Args:
        files: recording paths or glob patterns (EDF, BDF, FIF, BrainVision ``.vhdr``), or one ``.txt`` file listing
            them; resolved in sorted order.
        cache_dir: parent folder of the window caches.
        n_channels: rows of a window (the encoder's channel count).
        n_times: samples of a window, at ``sfreq``.
        sfreq: target sampling rate in Hz.
        l_freq: high-pass edge in Hz (``None``: no high-pass).
        h_freq: low-pass edge in Hz (``None``: no low-pass); must be below the Nyquist frequency of ``sfreq`` and of
            every recording.
        window_stride: samples between window starts (default ``n_times``: non-overlapping).
        picks: channel names to use, in this order, in every recording (default: the EEG channels not marked bad).
        channel_policy: filling ``n_channels`` rows from fewer channels: ``"tile"`` (DreamDiffusion's replication),
            ``"zero"`` (zero rows) or ``"error"``. More channels than ``n_channels`` is always an error.
        zscore: ``"window"`` (each channel of each window), ``"recording"`` (each channel over the whole resampled
            recording) or ``"none"`` (volts). Zero-variance channels become zeros, counted per file in the manifest
            (``flat_channels_zeroed``: channel-windows for ``"window"``, channels for ``"recording"``).
        val_fraction: fraction of recordings (of windows, for a single recording) in val, in ``[0, 1)``.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        seed: seed of the split and of the training shuffle.
        subject_from: subject of a recording: ``"file"`` (one subject per file) or ``"parent"`` (per parent folder
            name, e.g. ``sub-01/``); subject ids are positions in the sorted names.
        progress: show a progress bar over recordings while building the cache.
    """

    def __init__(self, files: list[str] | str, cache_dir: str = ".cache/brain2img/raw_eeg", n_channels: int = 128,
                 n_times: int = 512, sfreq: float = 250.0, l_freq: float | None = 5.0, h_freq: float | None = 95.0,
                 window_stride: int | None = None, picks: list[str] | None = None, channel_policy: str = "tile",
                 zscore: str = "window", val_fraction: float = 0.1, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0, subject_from: str = "file", progress: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_settings(n_channels, n_times, sfreq, l_freq, h_freq, window_stride, picks, channel_policy, zscore,
                        val_fraction, batch_size, num_workers, subject_from)
        self.files = resolve_files(files)
        self.cache_dir = Path(cache_dir)
        self.n_channels, self.n_times, self._sfreq = int(n_channels), int(n_times), float(sfreq)
        self.l_freq = None if l_freq is None else float(l_freq)
        self.h_freq = None if h_freq is None else float(h_freq)
        self.window_stride = int(window_stride) if window_stride is not None else self.n_times
        self.picks = None if picks is None else [str(p) for p in picks]
        self.channel_policy, self.zscore, self.subject_from = channel_policy, zscore, subject_from
        self.val_fraction, self.batch_size, self.num_workers = float(val_fraction), int(batch_size), int(num_workers)
        self.seed, self.progress = int(seed), bool(progress)
        self._checksums: list[str] | None = None
        self._verified: Path | None = None
        self._cache: WindowCache | None = None
        self._splits: dict[str, np.ndarray] | None = None

    # ----------------------------------------------------------------- shapes
    @property
    def modality(self) -> str:
        return "eeg"

    @property
    def brain_shape(self) -> tuple[int, int]:
        return (self.n_channels, self.n_times)

    @property
    def sfreq(self) -> float:
        return self._sfreq

    # ----------------------------------------------------------------- cache identity
    def config(self) -> dict[str, Any]:
        """The preprocessing settings that determine the cached windows."""
        return {"format_version": FORMAT_VERSION, "n_channels": self.n_channels, "n_times": self.n_times,
                "sfreq": self._sfreq, "l_freq": self.l_freq, "h_freq": self.h_freq,
                "window_stride": self.window_stride, "picks": self.picks, "channel_policy": self.channel_policy,
                "zscore": self.zscore, "subject_from": self.subject_from}

    def subjects(self) -> tuple[list[int], list[str]]:
        """Subject id of each recording and the subject names (file stems or parent folder names)."""
        if self.subject_from == "file":
            return list(range(len(self.files))), [str(p) for p in self.files]
        names = sorted({p.parent.name for p in self.files})
        return [names.index(p.parent.name) for p in self.files], names

    def checksums(self) -> list[str]:
        """sha256 of each recording (computed once per instance)."""
        if self._checksums is None:
            self._checksums = [recording_checksum(p) for p in self.files]
        return self._checksums

    @property
    def cache_folder(self) -> Path:
        """``cache_dir/raw_eeg-<hash of config, recording checksums and subjects>``."""
        key = config_hash({"config": self.config(), "files": self.checksums(), "subjects": self.subjects()[0]})
        return self.cache_dir / f"raw_eeg-{key}"

    @property
    def manifest_path(self) -> Path:
        return self.cache_folder / MANIFEST_NAME

    # ----------------------------------------------------------------- preparation
    def prepare_data(self) -> None:
        """Build the window cache unless a complete one exists (then verify its checksums); record the split."""
        folder = self.cache_folder
        if folder.is_dir():
            if self._verified != folder:
                open_window_cache(folder, verify=True)
                self._verified = folder
        else:
            self._build(folder)
            self._verified = folder
        cache = open_window_cache(folder, verify=False)
        _, info = self._split(cache)
        key = f"seed={self.seed},val_fraction={self.val_fraction}"
        if cache.manifest.get("splits", {}).get(key) != info:
            manifest = dict(cache.manifest)
            manifest["splits"] = {**manifest.get("splits", {}), key: info}
            write_json_atomic(folder / MANIFEST_NAME, manifest)

    def _plan(self, path: Path) -> dict[str, Any]:
        """Read one header: channels, rate, and the windows it will give (all errors before any heavy work)."""
        raw = pick_channels(read_recording(path, preload=False), self.picks, path)
        sfreq_in = float(raw.info["sfreq"])
        for name, value in (("l_freq", self.l_freq), ("h_freq", self.h_freq)):
            if value is not None and value >= sfreq_in / 2:
                raise ValueError(f"{name}={value:g} Hz is not below the Nyquist frequency ({sfreq_in / 2:g} Hz) of "
                                 f"recording '{path}' (sampled at {sfreq_in:g} Hz); lower {name}")
        channel_layout(len(raw.ch_names), self.n_channels, self.channel_policy, str(path))
        n_samples = resampled_length(int(raw.n_times), sfreq_in, self._sfreq)
        window_starts(n_samples, self.n_times, self.window_stride, str(path), self._sfreq)  # too short -> error
        return {"sfreq_in": sfreq_in, "n_samples_in": int(raw.n_times), "channels": list(raw.ch_names),
                "n_samples": n_samples, "n_windows": count_windows(n_samples, self.n_times, self.window_stride)}

    def _process(self, path: Path, plan: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        """Read, filter, resample and z-score one recording. Returns (data (C, N) float64, starts, flat count)."""
        raw = pick_channels(read_recording(path, preload=True), self.picks, path)
        check_finite(raw.get_data(), str(path), raw.ch_names)
        if self.l_freq is not None or self.h_freq is not None:
            raw.filter(self.l_freq, self.h_freq, picks="all", verbose="error")
        if float(raw.info["sfreq"]) != self._sfreq:
            raw.resample(self._sfreq, npad=resample_npad(raw.info["sfreq"], self._sfreq), verbose="error")
        data = raw.get_data()
        if data.shape[1] != plan["n_samples"]:
            raise RuntimeError(f"recording '{path}': resampling gave {data.shape[1]} samples, {plan['n_samples']} "
                               f"were planned from its header (MNE {mne.__version__})")
        check_finite(data, f"{path} (after filtering and resampling)", raw.ch_names)
        flat = 0
        if self.zscore == "recording":
            data, flat = zscore(data, axis=-1)
        return data, window_starts(data.shape[1], self.n_times, self.window_stride, str(path), self._sfreq), flat

    def _build(self, folder: Path) -> None:
        """Plan every recording from its header, then write all windows to a new cache folder."""
        subjects, subject_names = self.subjects()
        plans = [self._plan(p) for p in self.files]
        total = sum(p["n_windows"] for p in plans)
        records = []
        with WindowCacheWriter(folder, total, self.n_channels, self.n_times) as writer:
            bar = tqdm(list(zip(self.files, plans, strict=True)), desc="raw EEG -> windows", unit="file",
                       disable=not self.progress)
            for i, (path, plan) in enumerate(bar):
                first = writer.filled
                data, starts, flat = self._process(path, plan)
                layout = channel_layout(data.shape[0], self.n_channels, self.channel_policy, str(path))
                for c0 in range(0, len(starts), _CHUNK):
                    block = cut_windows(data, starts[c0 : c0 + _CHUNK], self.n_times)
                    if self.zscore == "window":
                        block, n_flat = zscore(block, axis=-1)
                        flat += n_flat
                    writer.write(map_channels(block, layout).astype(np.float32), subjects[i], i,
                                 starts[c0 : c0 + _CHUNK])
                records.append({"path": str(path), "sha256": self.checksums()[i], "subject": subjects[i],
                                "first_window": first, **plan, "flat_channels_zeroed": flat,
                                "channel_layout": layout.tolist()})
            manifest = {"config": self.config(), "mne_version": mne.__version__, "n_windows": total,
                        "subject_names": subject_names, "files": records}
            writer.commit(manifest)

    # ----------------------------------------------------------------- loading
    def _split(self, cache: WindowCache) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return split_windows(cache.sources, cache.starts, self.n_times, len(cache.manifest["files"]),
                             self.val_fraction, self.seed)

    def setup(self, stage: str | None = None) -> None:
        """Open the cached windows read-only (building the cache first if it does not exist) and split them."""
        if self._cache is not None:
            return
        folder = self.cache_folder
        if not folder.is_dir():
            self.prepare_data()
        cache = open_window_cache(folder, verify=False)
        if cache.manifest["config"] != self.config() or tuple(cache.manifest["shape"][1:]) != self.brain_shape:
            raise ValueError(f"window cache '{folder}' was built with {cache.manifest['config']}, which differs from "
                             f"this datamodule's {self.config()}; delete the folder")
        self._splits, _ = self._split(cache)
        self._cache = cache

    @property
    def split_indices(self) -> dict[str, np.ndarray]:
        """Cached-window indices of ``"train"`` and ``"val"`` (position ``index`` of a sample -> window)."""
        if self._splits is None:
            self.setup()
        assert self._splits is not None
        return self._splits

    def dataset(self, split: str) -> RawEEGWindows:
        """The windows of ``"train"`` or ``"val"``."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got '{split}'")
        indices = self.split_indices[split]
        assert self._cache is not None
        return RawEEGWindows(self._cache.folder, indices, self._cache.subjects)

    def train_dataloader(self) -> DataLoader:
        """Training windows, shuffled with a generator seeded by ``seed``."""
        data = self.dataset("train")
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(self.seed))
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        """Validation windows in cache order (empty when ``val_fraction=0``)."""
        return DataLoader(self.dataset("val"), batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)


def _check_settings(n_channels: int, n_times: int, sfreq: float, l_freq: float | None, h_freq: float | None,
                    window_stride: int | None, picks: list[str] | None, channel_policy: str, zscore_mode: str,
                    val_fraction: float, batch_size: int, num_workers: int, subject_from: str) -> None:
    """Validate the constructor arguments, naming the field."""
    for name, value in (("n_channels", n_channels), ("n_times", n_times), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if window_stride is not None and (int(window_stride) != window_stride or window_stride < 1):
        raise ValueError(f"window_stride must be a positive integer or None, got {window_stride!r}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if not sfreq > 0:
        raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
    nyquist = sfreq / 2
    for name, value in (("l_freq", l_freq), ("h_freq", h_freq)):
        if value is not None and not 0 < value < nyquist:
            raise ValueError(f"{name}={value} Hz must be > 0 and below the Nyquist frequency of the target rate "
                             f"sfreq={sfreq:g} Hz ({nyquist:g} Hz); lower {name}, raise sfreq, or pass None")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ValueError(f"l_freq={l_freq} must be below h_freq={h_freq}")
    if channel_policy not in CHANNEL_POLICIES:
        raise ValueError(f"channel_policy must be one of {CHANNEL_POLICIES}, got '{channel_policy}'")
    if zscore_mode not in ZSCORE_MODES:
        raise ValueError(f"zscore must be one of {ZSCORE_MODES}, got '{zscore_mode}'")
    if subject_from not in SUBJECT_FROM:
        raise ValueError(f"subject_from must be one of {SUBJECT_FROM}, got '{subject_from}'")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if picks is not None and (isinstance(picks, str) or len(picks) == 0 or len(set(picks)) != len(picks)):
        raise ValueError(f"picks must be a non-empty list of distinct channel names, got {picks!r}")
