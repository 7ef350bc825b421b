"""A datamodule for researchers' own ``.npy`` files: brain responses and the images shown, one per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.base import BrainImageDataModule, TrialData
from brain2img.data.splits import (
    MANIFEST_NAME,
    build_manifest,
    config_hash,
    read_manifest,
    sha256_file,
    split_stimuli,
    write_json_atomic,
)
from brain2img.data.validation import (
    check_brain,
    check_constant_per_stimulus,
    check_counts,
    check_images,
    check_per_trial,
    image_layout,
    load_npy,
)


class ArrayDataModule(BrainImageDataModule):
    """Brain responses and stimulus images from ``.npy`` files, split by stimulus like every brain2img dataset.

    Files (one row per trial): brain ``(n_trials, n_voxels)`` (fMRI) or ``(n_trials, n_channels, n_times)`` (EEG);
    images ``(n_trials, H, W, 3)`` uint8 or ``(n_trials, 3, H, W)`` float in [0, 1] (square); optional integer
    vectors of stimulus ids (trials showing the same image share an id; default: every trial its own stimulus),
    labels (constant within a stimulus; default ``-1``) and subjects (default ``0``). Everything is validated on
    load with errors naming the file. The split manifest (with sha256 of the input files) is written under
    ``cache_dir``; if an input file changes later, loading fails until the manifest is deleted.

    Args:
        brain_path: ``.npy`` brain responses.
        images_path: ``.npy`` images, one per trial.
        stimulus_ids_path: ``.npy`` int stimulus id per trial.
        labels_path: ``.npy`` int class label per trial.
        subjects_path: ``.npy`` int subject per trial.
        sfreq: EEG sampling frequency in Hz (ignored for fMRI).
        val_fraction: fraction of stimuli in the validation split.
        test_fraction: fraction of stimuli in the test split.
        seed: seed of the split and of the training shuffle.
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        cache_dir: folder for the split manifest.
        eval_repeats: val/test/predict samples: ``"average"`` (one per stimulus and subject) or ``"single"``.
        predict_split: split served by ``predict_dataloader``.
    """

    def __init__(
        self,
        brain_path: str,
        images_path: str,
        stimulus_ids_path: str | None = None,
        labels_path: str | None = None,
        subjects_path: str | None = None,
        sfreq: float | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str = ".cache/brain2img/arrays",
        eval_repeats: str = "average",
        predict_split: str = "test",
    ) -> None:
        super().__init__(batch_size, num_workers, eval_repeats, predict_split, seed)
        self.save_hyperparameters()
        self.paths: dict[str, Path | None] = {
            "brain": Path(brain_path), "images": Path(images_path),
            "stimulus_ids": Path(stimulus_ids_path) if stimulus_ids_path else None,
            "labels": Path(labels_path) if labels_path else None,
            "subjects": Path(subjects_path) if subjects_path else None,
        }
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.cache_dir = Path(cache_dir)
        self._sfreq = None if sfreq is None else float(sfreq)
        # headers only (memory-mapped): shapes are known now, data is read in setup
        brain = load_npy(brain_path, "brain data", mmap=True)
        if brain.ndim not in (2, 3):
            raise ValueError(f"brain data '{brain_path}' has shape {brain.shape}: expected (n_trials, n_voxels) for "
                             f"fMRI or (n_trials, n_channels, n_times) for EEG")
        images = load_npy(images_path, "images", mmap=True)
        layout = image_layout(images.shape, images.dtype, images_path)
        self._brain_shape = tuple(int(s) for s in brain.shape[1:])
        self._image_size = int(images.shape[1] if layout == "nhwc" else images.shape[2])

    @property
    def modality(self) -> str:
        return "fmri" if len(self._brain_shape) == 1 else "eeg"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        return self._brain_shape

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def sfreq(self) -> float | None:
        return self._sfreq if self.modality == "eeg" else None

    def config(self) -> dict[str, Any]:
        """What determines the split (the manifest folder is named by its hash)."""
        return {"paths": {k: str(p.resolve()) if p else None for k, p in self.paths.items()},
                "val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "seed": self.seed}

    @property
    def manifest_path(self) -> Path:
        return self.cache_dir / f"arrays-{config_hash(self.config())}" / MANIFEST_NAME

    def _read(self) -> dict[str, Any]:
        """Load and validate every file."""
        p = self.paths
        brain = check_brain(load_npy(p["brain"], "brain data"), p["brain"])
        n = len(brain)
        images = load_npy(p["images"], "images", mmap=True)
        check_counts(n, p["brain"], len(images), p["images"])
        images = check_images(np.asarray(images), p["images"])
        vectors = {}
        for key, what, default in (("stimulus_ids", "stimulus ids", np.arange(n)), ("labels", "labels", None),
                                   ("subjects", "subjects", np.zeros(n))):
            path = p[key]
            vectors[key] = (check_per_trial(load_npy(path, what), path, what, n, p["brain"]) if path is not None
                            else None if default is None else default.astype(np.int64))
        ids, first, inverse = np.unique(vectors["stimulus_ids"], return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        source = p["stimulus_ids"] or p["brain"]
        check_constant_per_stimulus(images, inverse, ids, p["images"], f"images (stimulus ids from '{source}')")
        labels = (check_constant_per_stimulus(vectors["labels"], inverse, ids, p["labels"], "labels")
                  if vectors["labels"] is not None else np.full(len(ids), -1, dtype=np.int64))
        return {"brain": brain, "images": images[first], "stimulus_ids": ids.astype(np.int64), "labels": labels,
                "trial_stimulus": inverse.astype(np.int64), "trial_subject": vectors["subjects"]}

    def _load(self) -> TrialData:
        """Validate, split by stimulus, and write (or check) the manifest."""
        arr = self._read()
        splits = split_stimuli(arr["labels"], self.val_fraction, self.test_fraction, self.seed)
        sums = {key: sha256_file(path) for key, path in self.paths.items() if path is not None}
        manifest = build_manifest(self.config(), self.seed, arr["stimulus_ids"], splits, arr["trial_stimulus"], sums)
        if self.manifest_path.is_file():
            old = read_manifest(self.manifest_path)
            for key, digest in sums.items():
                if old["checksums"].get(key) != digest:
                    raise ValueError(f"{key} file '{self.paths[key]}' changed since the split manifest "
                                     f"'{self.manifest_path}' was written (sha256 differs); delete the manifest to "
                                     f"split the new data")
        else:
            write_json_atomic(self.manifest_path, manifest)
        return TrialData(brain=arr["brain"], images=arr["images"], trial_stimulus=arr["trial_stimulus"],
                         stimulus_ids=arr["stimulus_ids"], labels=arr["labels"], trial_subject=arr["trial_subject"],
                         splits=splits)
