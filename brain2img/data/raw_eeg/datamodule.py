"""Unlabelled raw EEG recordings (EDF, BDF, FIF, BrainVision) as fixed-size windows for masked-signal pre-training.

This is the open counterpart of DreamDiffusion's unreleased pre-training corpus (reference spec section 1.2: MOABB
recordings, 5-95 Hz, channels replicated to 128, windows of 512 samples). Each recording is read with MNE, reduced to
its EEG channels (or ``picks``), band-passed (MNE's zero-phase FIR), resampled to ``sfreq`` (MNE's FFT method, padded
so that no fractional-sample shift occurs, see :func:`resample_npad`), cut into windows of ``n_times`` samples,
z-scored, mapped to ``n_channels`` rows, and written to one memory-mapped float32 array (see
:mod:`brain2img.data.raw_eeg.windows`).

Samples carry no image: ``{"brain": float32 (n_channels, n_times), "subject": int64, "index": int64}``, where
``index`` is the position in the split (:attr:`RawEEGDataModule.split_indices` maps it to the cached window).

Differences from DreamDiffusion's loader, by design: windows are cut deterministically (every ``window_stride``
samples) instead of one random crop per file and epoch; a recording shorter than a window is an error instead of being
stretched by interpolation; more channels than ``n_channels`` is an error instead of a random block (use ``picks``);
the ``/10`` scaling of the reference is not applied (z-scoring is the default normalisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mne
import numpy as np
from tqdm.auto import tqdm

from brain2img.data.raw_eeg.files import (
    pick_channels,
    read_recording,
    recording_checksum,
    resample_npad,
    resampled_length,
    resolve_files,
)
from brain2img.data.raw_eeg.windows import (
    CHANNEL_POLICIES,
    ZSCORE_MODES,
    channel_layout,
    check_finite,
    count_windows,
    cut_windows,
    map_channels,
    split_windows,
    window_starts,
    zscore,
)
from brain2img.data.schema import check_choice
from brain2img.data.window_cache import CachedCorpusDataModule, WindowCache, WindowCacheWriter
from brain2img.io import config_hash

SUBJECT_FROM = ("file", "parent")
FORMAT_VERSION = 1
_CHUNK = 256  # windows processed at once


# ----------------------------------------------------------------------------------------------------- dataset
# ----------------------------------------------------------------------------------------------------- datamodule
class RawEEGDataModule(CachedCorpusDataModule):
    """Unlabelled EEG windows from raw recordings, cached once as a memory-mapped array, split by recording.

    ``prepare_data`` builds (or reuses) the cache folder ``cache_dir/raw_eeg-<hash>``, the hash covering the
    preprocessing settings, the sha256 of every recording and the subject of each; a reused folder's arrays are checked
    against their sha256 and no recording is read. ``setup`` opens the windows read-only and splits them into
    train/val by recording (seeded; one recording: a contiguous block, see
    :func:`~brain2img.data.raw_eeg.windows.split_windows`); the split is recorded in the cache manifest.

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
        subject_from: subject of a recording: ``"file"`` (one subject per file) or ``"parent"`` (per parent folder
            name, e.g. ``sub-01/``); subject ids are positions in the sorted names.
        progress: show a progress bar over recordings while building the cache.
        **kwargs: :class:`~brain2img.data.corpus.CorpusDataModule` settings (``val_fraction``: fraction of
            recordings, of windows for a single recording, in val, in ``[0, 1)``; ``seed``: of the split and of the
            training shuffle; ``batch_size``, ``num_workers``).
    """

    corpus_label = "window cache"

    def __init__(self, files: list[str] | str, cache_dir: str = ".cache/brain2img/raw_eeg", n_channels: int = 128,
                 n_times: int = 512, sfreq: float = 250.0, l_freq: float | None = 5.0, h_freq: float | None = 95.0,
                 window_stride: int | None = None, picks: list[str] | None = None, channel_policy: str = "tile",
                 zscore: str = "window", subject_from: str = "file", progress: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        _check_settings(n_channels, n_times, sfreq, l_freq, h_freq, window_stride, picks, channel_policy, zscore,
                        subject_from)
        self.files = resolve_files(files)
        self.cache_dir = Path(cache_dir)
        self.n_channels, self.n_times, self._sfreq = int(n_channels), int(n_times), float(sfreq)
        self.l_freq = None if l_freq is None else float(l_freq)
        self.h_freq = None if h_freq is None else float(h_freq)
        self.window_stride = int(window_stride) if window_stride is not None else self.n_times
        self.picks = None if picks is None else [str(p) for p in picks]
        self.channel_policy, self.zscore, self.subject_from = channel_policy, zscore, subject_from
        self.progress = bool(progress)
        self._checksums: list[str] | None = None

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

    # ----------------------------------------------------------------- preparation
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


def _check_settings(n_channels: int, n_times: int, sfreq: float, l_freq: float | None, h_freq: float | None,
                    window_stride: int | None, picks: list[str] | None, channel_policy: str, zscore_mode: str,
                    subject_from: str) -> None:
    """Validate the constructor arguments, naming the field."""
    for name, value in (("n_channels", n_channels), ("n_times", n_times)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if window_stride is not None and (int(window_stride) != window_stride or window_stride < 1):
        raise ValueError(f"window_stride must be a positive integer or None, got {window_stride!r}")
    if not sfreq > 0:
        raise ValueError(f"sfreq must be > 0 Hz, got {sfreq}")
    nyquist = sfreq / 2
    for name, value in (("l_freq", l_freq), ("h_freq", h_freq)):
        if value is not None and not 0 < value < nyquist:
            raise ValueError(f"{name}={value} Hz must be > 0 and below the Nyquist frequency of the target rate "
                             f"sfreq={sfreq:g} Hz ({nyquist:g} Hz); lower {name}, raise sfreq, or pass None")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ValueError(f"l_freq={l_freq} must be below h_freq={h_freq}")
    check_choice(channel_policy, CHANNEL_POLICIES, "channel_policy")
    check_choice(zscore_mode, ZSCORE_MODES, "zscore")
    check_choice(subject_from, SUBJECT_FROM, "subject_from")
    if picks is not None and (isinstance(picks, str) or len(picks) == 0 or len(set(picks)) != len(picks)):
        raise ValueError(f"picks must be a non-empty list of distinct channel names, got {picks!r}")
