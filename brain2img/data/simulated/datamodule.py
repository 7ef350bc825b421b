"""The embedded default dataset: real photos from PyPI wheels and simulated fMRI or EEG responses to them.

Stimuli (:mod:`~brain2img.data.simulated.stimuli`) and their features are made once and cached in a folder shared
by every subject, modality and SNR; the responses (:mod:`~brain2img.data.simulated.simulator`) of one subject are
prepared into a folder of their own by the :class:`~brain2img.data.prepared.PreparedDataModule` base.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.manifest import array_checksums, verify_checksums
from brain2img.data.prepared import Prepared, PreparedDataModule, save_arrays
from brain2img.data.schema import check_choice
from brain2img.data.simulated import simulator
from brain2img.data.simulated.stimuli import make_stimuli
from brain2img.data.splits import split_stimuli
from brain2img.io import config_hash, read_json, staging_folder, write_json_atomic

log = logging.getLogger(__name__)
MODALITIES = ("fmri", "eeg")
EEG_SOURCES = 6  # EEG sources when n_sources is None
CACHE_VERSION = 2  # 2: stimulus_ids.npy and trial_subject.npy beside the arrays (the prepared-folder layout)
STIMULI_VERSION = 1
SOURCES_VERSION = 1  # the shared-source models of brain2img.data.simulated.sources
CROP_SCALE, FLIP_PROB, JITTER = (0.2, 1.0), 0.5, 0.15
CHECKSUMS = "checksums.json"


class SimulatedDataModule(PreparedDataModule):
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
        n_sources: latent sources. fMRI: ``None`` (default: every voxel its own random projection of the features,
            nothing shared across subjects) or ``K`` sources common to all subjects, mixed into the voxels
            (:mod:`~brain2img.data.simulated.sources`); EEG: ``None`` means 6.
        shared: share of the structure common to all subjects, in ``[0, 1]``: fMRI (needs ``n_sources``) the
            template's share of the mixing, EEG the weight of common source time courses, drives and mixing.
        val_fraction: fraction of stimuli in the validation split.
        test_fraction: fraction of stimuli in the test split.
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``seed``: of stimuli, encoding
            model, noise, split and training shuffle; ``cache_dir``, ``batch_size``, ``num_workers``,
            ``eval_repeats``, ``predict_split``).
    """

    cache_name = "simulated"

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
        n_sources: int | None = None,
        shared: float = 0.0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice(modality, MODALITIES, "modality")
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
        if n_sources is not None and (int(n_sources) != n_sources or n_sources < 1):
            raise ValueError(f"n_sources must be a positive integer or null (data.n_sources), got {n_sources!r}")
        if not 0.0 <= shared <= 1.0:
            raise ValueError(f"shared must be in [0, 1] (data.shared), got {shared}")
        if modality == "fmri" and shared != 0 and n_sources is None:
            raise ValueError(f"shared={shared} (data.shared) needs data.n_sources: without sources the simulated "
                             "fMRI voxels share no structure across subjects")
        self.save_hyperparameters()
        self.n_sources = None if n_sources is None else int(n_sources)
        self.shared = float(shared)
        self._modality, self.subject, self.n_stimuli, self._image_size = modality, int(subject), n_stimuli, image_size
        self.n_repeats, self.snr, self.n_voxels = int(n_repeats), float(snr), n_voxels
        self.n_channels, self._sfreq, self.duration = int(n_channels), float(sfreq), float(duration)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return self._modality

    @property
    def brain_shape(self) -> tuple[int, ...]:
        if self._modality == "fmri":
            return (self.n_voxels[self.subject],)
        return (self.n_channels, int(round(self._sfreq * self.duration)))

    # ----------------------------------------------------------------- configs and folders
    def stimulus_config(self) -> dict[str, Any]:
        """What determines the stimuli and their features."""
        return {"version": STIMULI_VERSION, "n_stimuli": self.n_stimuli, "image_size": self._image_size,
                "seed": self.seed, "crop_scale": list(CROP_SCALE), "flip_prob": FLIP_PROB, "jitter": JITTER}

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared dataset (its folder is named by this config's hash)."""
        cfg = {**self.stimulus_config(), "layout": CACHE_VERSION, "modality": self._modality,
               "subject": self.subject, "n_repeats": self.n_repeats, "snr": self.snr,
               "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
        if self._modality == "fmri":
            cfg["n_voxels"] = self.n_voxels[self.subject]
        else:
            cfg.update(n_channels=self.n_channels, sfreq=self._sfreq, duration=self.duration)
        if self.n_sources is not None or self.shared != 0:  # absent by default: earlier folders keep their hash
            cfg.update(n_sources=self.n_sources, shared=self.shared, sources_version=SOURCES_VERSION)
        return cfg

    def folder_label(self) -> str:
        return f"{self._modality}-sub{self.subject}"

    @property
    def stimulus_folder(self) -> Path:
        """Cache folder of the stimuli and their features (shared by subjects, modalities and SNRs)."""
        return self.cache_dir / f"stimuli-{config_hash(self.stimulus_config())}"

    # ----------------------------------------------------------------- generation
    def _stimuli(self) -> dict[str, np.ndarray]:
        """Load or make the stimuli and their low/high-level features."""
        folder = self.stimulus_folder
        sums_path = folder / CHECKSUMS
        if sums_path.is_file():
            sums = read_json(sums_path, "stimulus cache checksums")
            verify_checksums(folder, sums)
            return {name[:-4]: np.load(folder / name, allow_pickle=False) for name in sums}
        start = time.perf_counter()
        stim = make_stimuli(self.n_stimuli, self._image_size, self.seed, CROP_SCALE, FLIP_PROB, JITTER)
        arrays = {"images": stim.images, "labels": stim.labels, "low": simulator.low_level_features(stim.images),
                  "high": simulator.high_level_features(stim.images)}
        with staging_folder(folder, CHECKSUMS) as tmp:
            save_arrays(tmp, arrays)
            write_json_atomic(tmp / CHECKSUMS, array_checksums(tmp))
        log.info("made %d stimuli and their features in %.1f s", self.n_stimuli, time.perf_counter() - start)
        return arrays

    def write(self, folder: Path) -> Prepared:
        """Simulate this subject's responses to the stimuli and split the stimuli (stratified by source photo)."""
        stim = self._stimuli()
        trial_stimulus, trial_repeat = simulator.presentation_order(self.n_stimuli, self.n_repeats, self.seed)
        if self._modality == "fmri":
            brain = simulator.fmri_responses(stim["low"], stim["high"], trial_stimulus, self.n_voxels[self.subject],
                                             self.snr, self.seed, self.subject, self.n_sources, self.shared)
        else:
            brain = simulator.eeg_responses(stim["low"], stim["high"], trial_stimulus, self.n_channels, self._sfreq,
                                            self.duration, self.snr, self.seed, self.subject,
                                            self.n_sources or EEG_SOURCES, self.shared)
        stimulus_ids = np.arange(self.n_stimuli, dtype=np.int64)
        save_arrays(folder, {"brain": brain, "images": stim["images"], "labels": stim["labels"],
                             "trial_stimulus": trial_stimulus, "trial_repeat": trial_repeat,
                             "stimulus_ids": stimulus_ids,
                             "trial_subject": np.full(len(trial_stimulus), self.subject, dtype=np.int64)})
        splits = split_stimuli(stim["labels"], self.val_fraction, self.test_fraction, self.seed)
        return Prepared(stimulus_ids, trial_stimulus, splits)
