"""The embedded default dataset: real photos from PyPI wheels and simulated fMRI or EEG responses to them."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data import encoding
from brain2img.data.base import BrainImageDataModule, TrialData
from brain2img.data.splits import (
    MANIFEST_NAME,
    build_manifest,
    config_hash,
    open_prepared,
    publish_folder,
    sha256_file,
    split_stimuli,
    verify_checksums,
    write_json_atomic,
)
from brain2img.data.stimuli import make_stimuli

log = logging.getLogger(__name__)
MODALITIES = ("fmri", "eeg")
CACHE_VERSION = 1
CROP_SCALE, FLIP_PROB, JITTER = (0.2, 1.0), 0.5, 0.15


def _save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Save ``name.npy`` files and return their sha256 checksums."""
    sums = {}
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", arr)
        sums[f"{name}.npy"] = sha256_file(folder / f"{name}.npy")
    return sums


def _read_checksums(path: Path) -> dict[str, str]:
    """Read the ``checksums.json`` of the stimulus cache."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"cache checksum file '{path}' is not valid JSON: {err}; delete its folder") from err



class SimulatedDataModule(BrainImageDataModule):
    """Simulated fMRI or EEG responses to real colour photos (11 photos from scikit-image and scikit-learn, expanded
    by seeded crops, flips and colour jitter), split by stimulus. Generated once by ``prepare_data`` and cached under
    ``cache_dir`` in a folder named by a hash of the generating config; later runs reuse it after checking checksums.

    Args:
        modality: ``"fmri"`` (voxel vectors) or ``"eeg"`` (channels x times epochs).
        subject: simulated subject; for fMRI an index into ``n_voxels``, for EEG any index >= 0.
        n_stimuli: number of distinct stimulus images (at least 11).
        image_size: side of the square stimulus images in pixels (at least 16).
        n_repeats: trials per stimulus, each with fresh noise.
        snr: single-trial signal variance / noise variance.
        n_voxels: voxel count of each fMRI subject.
        n_channels: EEG channels.
        sfreq: EEG sampling frequency in Hz.
        duration: EEG epoch length in seconds after stimulus onset (``n_times = round(sfreq * duration)``).
        val_fraction: fraction of stimuli in the validation split.
        test_fraction: fraction of stimuli in the test split.
        seed: seed of stimuli, encoding model, noise, split and training shuffle.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        cache_dir: folder of the generated data.
        eval_repeats: val/test/predict samples: ``"average"`` (one per stimulus, brain averaged over repeats) or
            ``"single"`` (every trial).
        predict_split: split served by ``predict_dataloader`` (``"train"``, ``"val"`` or ``"test"``).
    """

    def __init__(
        self,
        modality: str = "fmri",
        subject: int = 0,
        n_stimuli: int = 400,
        image_size: int = 64,
        n_repeats: int = 3,
        snr: float = 1.0,
        n_voxels: tuple[int, ...] = (1500, 1200),
        n_channels: int = 32,
        sfreq: float = 128.0,
        duration: float = 0.5,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str = ".cache/brain2img/simulated",
        eval_repeats: str = "average",
        predict_split: str = "test",
    ) -> None:
        super().__init__(batch_size, num_workers, eval_repeats, predict_split, seed)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got '{modality}'")
        n_voxels = tuple(int(v) for v in n_voxels)
        if modality == "fmri" and not 0 <= subject < len(n_voxels):
            raise ValueError(f"subject must be in [0, {len(n_voxels)}) for n_voxels={list(n_voxels)}, got {subject}")
        if modality == "eeg" and subject < 0:
            raise ValueError(f"subject must be >= 0, got {subject}")
        if modality == "eeg" and (n_channels < 1 or sfreq <= 0 or round(sfreq * duration) < 8 or duration < 0.2):
            raise ValueError(f"EEG needs n_channels >= 1, sfreq > 0, duration >= 0.2 s and at least 8 samples, got "
                             f"n_channels={n_channels}, sfreq={sfreq}, duration={duration}")
        if n_stimuli < 11 or image_size < 16 or n_repeats < 1 or not snr > 0:
            raise ValueError(f"need n_stimuli >= 11, image_size >= 16, n_repeats >= 1 and snr > 0, got "
                             f"n_stimuli={n_stimuli}, image_size={image_size}, n_repeats={n_repeats}, snr={snr}")
        self.save_hyperparameters()
        self._modality, self.subject, self.n_stimuli, self._image_size = modality, int(subject), n_stimuli, image_size
        self.n_repeats, self.snr, self.n_voxels = int(n_repeats), float(snr), n_voxels
        self.n_channels, self._sfreq, self.duration = int(n_channels), float(sfreq), float(duration)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.cache_dir = Path(cache_dir)

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return self._modality

    @property
    def brain_shape(self) -> tuple[int, ...]:
        if self._modality == "fmri":
            return (self.n_voxels[self.subject],)
        return (self.n_channels, int(round(self._sfreq * self.duration)))

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def sfreq(self) -> float | None:
        return self._sfreq if self._modality == "eeg" else None

    @property
    def manifest_path(self) -> Path:
        return self.data_folder / MANIFEST_NAME

    # ----------------------------------------------------------------- configs and folders
    def stimulus_config(self) -> dict[str, Any]:
        """What determines the stimuli and their features."""
        return {"version": CACHE_VERSION, "n_stimuli": self.n_stimuli, "image_size": self._image_size,
                "seed": self.seed, "crop_scale": list(CROP_SCALE), "flip_prob": FLIP_PROB, "jitter": JITTER}

    def generating_config(self) -> dict[str, Any]:
        """What determines the cached dataset (its folder is named by this config's hash)."""
        cfg = {**self.stimulus_config(), "modality": self._modality, "subject": self.subject,
               "n_repeats": self.n_repeats, "snr": self.snr, "val_fraction": self.val_fraction,
               "test_fraction": self.test_fraction}
        if self._modality == "fmri":
            cfg["n_voxels"] = self.n_voxels[self.subject]
        else:
            cfg.update(n_channels=self.n_channels, sfreq=self._sfreq, duration=self.duration)
        return cfg

    @property
    def data_folder(self) -> Path:
        """Cache folder of this config's dataset."""
        name = f"{self._modality}-sub{self.subject}-{config_hash(self.generating_config())}"
        return self.cache_dir / name

    @property
    def stimulus_folder(self) -> Path:
        """Cache folder of the stimuli and their features (shared by subjects, modalities and SNRs)."""
        return self.cache_dir / f"stimuli-{config_hash(self.stimulus_config())}"

    # ----------------------------------------------------------------- generation
    def _stimuli(self) -> dict[str, np.ndarray]:
        """Load or make the stimuli and their low/high-level features."""
        folder = self.stimulus_folder
        sums_path = folder / "checksums.json"
        if sums_path.is_file():
            sums = _read_checksums(sums_path)
            verify_checksums(folder, sums)
            return {name[:-4]: np.load(folder / name) for name in sums}
        start = time.perf_counter()
        stim = make_stimuli(self.n_stimuli, self._image_size, self.seed, CROP_SCALE, FLIP_PROB, JITTER)
        arrays = {"images": stim.images, "labels": stim.labels, "low": encoding.low_level_features(stim.images),
                  "high": encoding.high_level_features(stim.images)}
        tmp = self.cache_dir / f".{folder.name}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        write_json_atomic(tmp / "checksums.json", _save_arrays(tmp, arrays))
        publish_folder(tmp, folder)
        log.info("made %d stimuli and their features in %.1f s", self.n_stimuli, time.perf_counter() - start)
        return arrays

    def prepare_data(self) -> None:
        """Generate and cache the dataset unless this config's folder already has a manifest."""
        folder = self.data_folder
        if (folder / MANIFEST_NAME).is_file():
            return
        stim = self._stimuli()
        trial_stimulus, trial_repeat = encoding.presentation_order(self.n_stimuli, self.n_repeats, self.seed)
        if self._modality == "fmri":
            brain = encoding.fmri_responses(stim["low"], stim["high"], trial_stimulus, self.n_voxels[self.subject],
                                            self.snr, self.seed, self.subject)
        else:
            brain = encoding.eeg_responses(stim["low"], stim["high"], trial_stimulus, self.n_channels, self._sfreq,
                                           self.duration, self.snr, self.seed, self.subject)
        splits = split_stimuli(stim["labels"], self.val_fraction, self.test_fraction, self.seed)
        arrays = {"brain": brain, "images": stim["images"], "labels": stim["labels"],
                  "trial_stimulus": trial_stimulus, "trial_repeat": trial_repeat}
        tmp = self.cache_dir / f".{folder.name}.tmp-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        sums = _save_arrays(tmp, arrays)
        manifest = build_manifest(self.generating_config(), self.seed, np.arange(self.n_stimuli), splits,
                                  trial_stimulus, sums)
        write_json_atomic(tmp / MANIFEST_NAME, manifest)
        publish_folder(tmp, folder)

    def _load(self) -> TrialData:
        """Verify checksums and load the cached arrays (generating them first if needed)."""
        if not self.manifest_path.is_file():
            self.prepare_data()
        folder = self.data_folder
        manifest, arr = open_prepared(folder, self.manifest_path, config_hash(self.generating_config()),
                                      ("brain", "images", "labels", "trial_stimulus"))
        splits = {name: np.asarray(s["stimulus_ids"], dtype=np.int64) for name, s in manifest["splits"].items()}
        n_trials = len(arr["trial_stimulus"])
        return TrialData(brain=arr["brain"], images=arr["images"], trial_stimulus=arr["trial_stimulus"],
                         stimulus_ids=np.arange(len(arr["images"]), dtype=np.int64), labels=arr["labels"],
                         trial_subject=np.full(n_trials, self.subject, dtype=np.int64), splits=splits)
