"""Unlabelled simulated fMRI for masked-autoencoder pre-training: spontaneous activity of many simulated subjects.

DC-MAE (Chen et al. 2023, "Seeing Beyond the Brain"; MinD-Vis stage 1) pre-trains its fMRI masked autoencoder on
the Human Connectome Project's resting-state fMRI (~136,000 samples of 1,205 subjects, 120 per subject) and, with
``include_kam=True``, the GOD training fMRI, then fine-tunes on the ~1,200 labelled GOD pairs. The simulated
analogue: ``n_subjects`` corpus subjects (ids from 1000 on) with ``windows_per_subject`` samples each of spontaneous
fMRI (:func:`~brain2img.data.simulated.sources.fmri_spontaneous`: no stimulus, the same shared-source mixing as the
benchmark's subjects), each with its own voxel count, optionally plus the *training-split* trials of the benchmark
subjects (:class:`~brain2img.data.simulated.SimulatedDataModule` with the same source model).

Like the reference, each subject is z-scored with one scalar mean and std over its own samples and wrap-padded to
the longest voxel count (:func:`~brain2img.encoders.voxel_padding.pad_to_length`); the encoder pads that to whole
patches itself. Voxel ``j`` of every subject is template column ``j`` (anatomical alignment), so what is learnt on
the corpus transfers to the benchmark subjects. Validation holds out whole corpus subjects (seeded).
Samples: ``{"brain", "subject", "index"}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from brain2img.data.corpus import CorpusDataModule, TensorWindows
from brain2img.data.simulated.datamodule import SimulatedDataModule
from brain2img.data.simulated.simulator import _rng
from brain2img.data.simulated.sources import fmri_spontaneous
from brain2img.encoders.voxel_padding import pad_to_length

log = logging.getLogger(__name__)
CORPUS_SUBJECT = 1000  #: id (and simulator subject index) of the first corpus subject; the next ones count up
CORPUS_STREAM = 6  #: random stream of the corpus's voxel counts and validation subjects


def subject_zscore(brain: np.ndarray) -> np.ndarray:
    """One subject's samples minus their scalar mean, divided by their scalar std (ddof 0): float32.

    Raises:
        ValueError: non-finite or constant values.
    """
    x = np.asarray(brain, dtype=np.float64)
    std = x.std()
    if not np.isfinite(x).all() or not std > 0:
        raise ValueError("cannot z-score a subject's simulated fMRI: non-finite or constant values")
    return ((x - x.mean()) / std).astype(np.float32)


class SimulatedFMRICorpus(CorpusDataModule):
    """Spontaneous fMRI of many simulated subjects (and optionally the benchmark's training trials) as unlabelled
    windows, z-scored per subject and wrap-padded to the longest subject; whole corpus subjects are held out for the
    validation loss. Generated in memory on ``setup`` (seeded, about a second for the defaults).

    Args:
        n_subjects: corpus subjects (ids ``1000, 1001, ...``, disjoint from the benchmark's ``0, 1, ...``).
        windows_per_subject: spontaneous samples per corpus subject (HCP: 120).
        voxel_range: ``(min, max)`` voxel count of a corpus subject; each draws its own, uniformly (seeded). Keep
            ``max`` at least the benchmark subjects' counts so their voxels are all pre-trained.
        n_sources: latent sources shared by all subjects (:mod:`~brain2img.data.simulated.sources`).
        shared: share of the common template in each subject's mixing, in ``[0, 1]``.
        snr: signal variance / noise variance of single samples.
        autocorrelation: lag-1 correlation of the sources over a subject's consecutive samples, in ``[0, 1)``.
        include_benchmark: add the training-split trials of the benchmark subjects (never their validation or test
            trials), as DC-MAE adds the GOD training fMRI (``include_kam=True``).
        n_voxels, n_stimuli, image_size, n_repeats, cache_dir: the benchmark's
            :class:`~brain2img.data.simulated.SimulatedDataModule` settings (with ``include_benchmark``; its
            ``n_sources``, ``shared``, ``snr`` and ``seed`` are this corpus's). ``n_voxels`` also counts towards the
            padded length when included.
        **kwargs: :class:`~brain2img.data.corpus.CorpusDataModule` settings (``val_fraction``: share of corpus
            subjects held out, > 0; ``seed``: of the whole simulation, the split and the shuffle; ``batch_size``,
            ``num_workers``).
    """

    def __init__(
        self,
        n_subjects: int = 100,
        windows_per_subject: int = 120,
        voxel_range: Sequence[int] = (1200, 1600),
        n_sources: int = 32,
        shared: float = 0.8,
        snr: float = 1.0,
        autocorrelation: float = 0.0,
        include_benchmark: bool = False,
        n_voxels: Sequence[int] = (1500, 1200),
        n_stimuli: int = 400,
        image_size: int = 64,
        n_repeats: int = 3,
        cache_dir: str = ".cache/brain2img/simulated",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_int(n_subjects, "n_subjects", 2)
        _check_int(windows_per_subject, "windows_per_subject", 1)
        _check_int(n_sources, "n_sources", 1)
        if len(voxel_range) != 2 or not 1 <= int(voxel_range[0]) <= int(voxel_range[1]):
            raise ValueError(f"voxel_range must be (min, max) with 1 <= min <= max (data.voxel_range), got "
                             f"{list(voxel_range)}")
        if not 0.0 <= shared <= 1.0:
            raise ValueError(f"shared must be in [0, 1] (data.shared), got {shared}")
        if not (snr > 0 and np.isfinite(snr)):
            raise ValueError(f"snr must be a positive finite number (data.snr), got {snr}")
        if not 0.0 <= autocorrelation < 1.0:
            raise ValueError(f"autocorrelation must be in [0, 1) (data.autocorrelation), got {autocorrelation}")
        n_val = int(round(self.val_fraction * n_subjects))
        if not 1 <= n_val < n_subjects:
            raise ValueError(f"val_fraction={self.val_fraction} of n_subjects={n_subjects} must hold out at least one "
                             f"and at most n_subjects - 1 corpus subjects (data.val_fraction), got {n_val}")
        self.save_hyperparameters()
        self.n_subjects, self.windows_per_subject, self.n_val = int(n_subjects), int(windows_per_subject), n_val
        self.n_sources, self.shared, self.snr = int(n_sources), float(shared), float(snr)
        self.autocorrelation = float(autocorrelation)
        lo, hi = int(voxel_range[0]), int(voxel_range[1])
        self.subject_ids = np.arange(CORPUS_SUBJECT, CORPUS_SUBJECT + self.n_subjects, dtype=np.int64)
        self.subject_voxels = _rng(self.seed, CORPUS_STREAM, 1).integers(lo, hi + 1, size=self.n_subjects)
        self.benchmark = [
            SimulatedDataModule(modality="fmri", subject=s, n_stimuli=n_stimuli, image_size=image_size,
                                n_repeats=n_repeats, snr=snr, n_voxels=tuple(n_voxels), n_sources=n_sources,
                                shared=shared, seed=self.seed, cache_dir=cache_dir)
            for s in range(len(n_voxels))
        ] if include_benchmark else []
        self._windows: dict[str, TensorWindows] | None = None

    @property
    def modality(self) -> str:
        return "fmri"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        """``(longest voxel count,)`` over the corpus subjects and the included benchmark subjects."""
        counts = [int(self.subject_voxels.max()), *(dm.brain_shape[0] for dm in self.benchmark)]
        return (max(counts),)

    def val_subjects(self) -> np.ndarray:
        """Ids of the held-out corpus subjects (seeded), sorted."""
        picked = _rng(self.seed, CORPUS_STREAM, 2).permutation(self.n_subjects)[: self.n_val]
        return np.sort(self.subject_ids[picked])

    def prepare_data(self) -> None:
        """Generate (or find in the cache) the benchmark subjects' trials; the corpus itself is made in ``setup``."""
        for dm in self.benchmark:
            dm.prepare_data()

    def _blocks(self) -> list[tuple[int, np.ndarray]]:
        """``(subject id, unpadded float32 samples)`` of every subject, benchmark subjects first."""
        blocks = []
        for dm in self.benchmark:
            dm.setup()
            blocks.append((dm.subject, dm.dataset("train", "single").brain.numpy()))
        for sid, n_vox in zip(self.subject_ids.tolist(), self.subject_voxels.tolist(), strict=True):
            blocks.append((sid, fmri_spontaneous(self.windows_per_subject, n_vox, self.snr, self.seed, sid,
                                                 self.n_sources, self.shared, self.autocorrelation)))
        return blocks

    def setup(self, stage: str | None = None) -> None:
        """Simulate the corpus, z-score and pad each subject, and hold out the validation subjects."""
        if self._windows is not None:
            return
        start = time.perf_counter()
        length, val = self.brain_shape[0], set(self.val_subjects().tolist())
        parts: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"train": ([], []), "val": ([], [])}
        for sid, block in self._blocks():
            brains, subjects = parts["val" if sid in val else "train"]
            brains.append(pad_to_length(subject_zscore(block), length))
            subjects.append(np.full(len(block), sid, dtype=np.int64))
        self._windows = {split: TensorWindows(torch.from_numpy(np.concatenate(b)), torch.from_numpy(np.concatenate(s)))
                         for split, (b, s) in parts.items()}
        log.info("simulated %d fMRI corpus windows (%d voxels) in %.1f s", sum(len(w) for w in self._windows.values()),
                 length, time.perf_counter() - start)

    def windows(self, split: str) -> TensorWindows:
        assert self._windows is not None
        return self._windows[split]


def _check_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (data.{name}), got {value!r}")
