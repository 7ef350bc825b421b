"""A datamodule for researchers' own ``.npy`` files: brain responses and the images shown, one per trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.arrays.validation import (
    check_brain,
    check_constant_per_stimulus,
    check_counts,
    check_images,
    check_per_trial,
    image_layout,
)
from brain2img.data.prepared import Prepared, PreparedDataModule, save_arrays
from brain2img.data.splits import split_stimuli
from brain2img.io import load_npy, sha256_file


class ArrayDataModule(PreparedDataModule):
    """Brain responses and stimulus images from ``.npy`` files, split by stimulus like every brain2img dataset.

    Files (one row per trial): brain ``(n_trials, n_voxels)`` (fMRI) or ``(n_trials, n_channels, n_times)`` (EEG);
    images ``(n_trials, H, W, 3)`` uint8 or ``(n_trials, 3, H, W)`` float in [0, 1] (square); optional integer
    vectors of stimulus ids (trials showing the same image share an id; default: every trial its own stimulus),
    labels (constant within a stimulus; default ``-1``) and subjects (default ``0``). Everything is validated when
    the data is prepared, with errors naming the file. The prepared copy and its split manifest are written under
    ``cache_dir`` in a folder named by the settings and the sha256 of every input file: after an input file
    changes, a new folder is prepared (the earlier one is left as it was).

    Args:
        brain_path: ``.npy`` brain responses.
        images_path: ``.npy`` images, one per trial.
        stimulus_ids_path: ``.npy`` int stimulus id per trial.
        labels_path: ``.npy`` int class label per trial.
        subjects_path: ``.npy`` int subject per trial.
        sfreq: EEG sampling frequency in Hz (ignored for fMRI).
        val_fraction: fraction of stimuli in the validation split.
        test_fraction: fraction of stimuli in the test split.
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``seed``: of the split and of the
            training shuffle; ``cache_dir``, ``batch_size``, ``num_workers``, ``eval_repeats``, ``predict_split``).
    """

    cache_name = "arrays"

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.paths: dict[str, Path | None] = {
            "brain": Path(brain_path), "images": Path(images_path),
            "stimulus_ids": Path(stimulus_ids_path) if stimulus_ids_path else None,
            "labels": Path(labels_path) if labels_path else None,
            "subjects": Path(subjects_path) if subjects_path else None,
        }
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self._sfreq = None if sfreq is None else float(sfreq)
        self._sums: dict[str, str] | None = None
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

    def source_checksums(self) -> dict[str, str]:
        """sha256 of every given input file (computed once per instance)."""
        if self._sums is None:
            self._sums = {key: sha256_file(path) for key, path in self.paths.items() if path is not None}
        return self._sums

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared copy and its split: the input files (paths and sha256) and the split."""
        return {"paths": {k: str(p.resolve()) if p else None for k, p in self.paths.items()},
                "sha256": self.source_checksums(), "val_fraction": self.val_fraction,
                "test_fraction": self.test_fraction, "seed": self.seed}

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

    def write(self, folder: Path) -> Prepared:
        """Validate every file, then save the arrays and split by stimulus (stratified by label)."""
        arr = self._read()
        save_arrays(folder, {**arr, "brain": arr["brain"].astype(np.float32, copy=False)})
        splits = split_stimuli(arr["labels"], self.val_fraction, self.test_fraction, self.seed)
        sources = {key: {"path": str(self.paths[key].resolve()), "sha256": digest}
                   for key, digest in self.source_checksums().items()}
        return Prepared(arr["stimulus_ids"], arr["trial_stimulus"], splits, {"sources": sources})
