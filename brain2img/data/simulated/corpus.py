"""Unlabelled simulated EEG for masked-signal pre-training: the training trials of several simulated subjects.

DreamDiffusion pre-trains its encoder on a large unlabelled EEG corpus (MOABB, >400 subjects) and fine-tunes on
EEG-ImageNet. The simulated analogue: the EEG of several simulated subjects (each with its own sources, mixing and
noise) to the *training* stimuli of the benchmark, without images. The stimulus split is the benchmark's, so no
validation or test stimulus is ever seen in pre-training. At a realistic scale, ``n_spontaneous_subjects`` more
subjects add ``windows_per_subject`` windows each of spontaneous EEG (no stimulus at all,
:func:`~brain2img.data.simulated.sources.eeg_spontaneous`); with ``shared > 0`` all subjects share part of their
source model, which is what pre-training on other subjects can transfer. Samples: ``{"brain", "subject", "index"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from brain2img.data.corpus import CorpusDataModule, TensorWindows
from brain2img.data.simulated.datamodule import EEG_SOURCES, SimulatedDataModule
from brain2img.data.simulated.sources import eeg_spontaneous

SPONTANEOUS_SUBJECT = 1000  #: id of the first spontaneous subject (the next ones count up)


class SimulatedEEGCorpus(CorpusDataModule):
    """Training-split EEG trials of simulated subjects, as unlabelled windows; a seeded share is held out for
    validation of the pre-training loss.

    Args:
        subjects: simulated subjects to include (each has its own sources, mixing and noise).
        splits: stimulus splits whose trials are used (default: training stimuli only).
        n_stimuli, image_size, n_repeats, snr, n_channels, sfreq, duration, n_sources, shared, cache_dir: as
            :class:`~brain2img.data.simulated.SimulatedDataModule` (use the fine-tuning benchmark's values so
            that the stimulus split and the shared source model are the same).
        n_spontaneous_subjects: further simulated subjects (ids from 1000 on, disjoint from ``subjects``) that
            contribute spontaneous EEG only (0: none).
        windows_per_subject: spontaneous windows of each of them.
        **kwargs: :class:`~brain2img.data.corpus.CorpusDataModule` settings (``val_fraction``: share of windows
            held out, > 0; ``seed``: also the benchmark's seed; ``batch_size``, ``num_workers``).
    """

    def __init__(
        self,
        subjects: Sequence[int] = (0, 1, 2, 3, 4, 5),
        splits: Sequence[str] = ("train",),
        n_stimuli: int = 400,
        image_size: int = 64,
        n_repeats: int = 3,
        snr: float = 1.0,
        n_channels: int = 32,
        sfreq: float = 128.0,
        duration: float = 0.5,
        n_sources: int | None = None,
        shared: float = 0.0,
        n_spontaneous_subjects: int = 0,
        windows_per_subject: int = 200,
        cache_dir: str = ".cache/brain2img/simulated",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not subjects:
            raise ValueError("SimulatedEEGCorpus needs at least one subject (data.subjects)")
        if "test" in splits:
            raise ValueError("SimulatedEEGCorpus refuses the test split (data.splits): pre-training must not see "
                             "the EEG of test stimuli")
        if not self.val_fraction > 0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if int(n_spontaneous_subjects) != n_spontaneous_subjects or n_spontaneous_subjects < 0:
            raise ValueError(f"n_spontaneous_subjects must be a non-negative integer (data.n_spontaneous_subjects), "
                             f"got {n_spontaneous_subjects!r}")
        if int(windows_per_subject) != windows_per_subject or windows_per_subject < 1:
            raise ValueError(f"windows_per_subject must be a positive integer (data.windows_per_subject), got "
                             f"{windows_per_subject!r}")
        self.spontaneous_subjects = [SPONTANEOUS_SUBJECT + i for i in range(int(n_spontaneous_subjects))]
        if set(self.spontaneous_subjects) & {int(s) for s in subjects}:
            raise ValueError(f"data.subjects must be below {SPONTANEOUS_SUBJECT} with n_spontaneous_subjects > 0 "
                             f"(ids from {SPONTANEOUS_SUBJECT} on are the spontaneous subjects), got {list(subjects)}")
        self.save_hyperparameters()
        self.sources = [
            SimulatedDataModule(modality="eeg", subject=int(s), n_stimuli=n_stimuli, image_size=image_size,
                                n_repeats=n_repeats, snr=snr, n_channels=n_channels, sfreq=sfreq, duration=duration,
                                n_sources=n_sources, shared=shared, seed=self.seed, cache_dir=cache_dir)
            for s in subjects
        ]
        self.windows_per_subject = int(windows_per_subject)
        self.splits = tuple(splits)
        self._windows: dict[str, TensorWindows] | None = None

    @property
    def modality(self) -> str:
        return "eeg"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        """``(n_channels, n_times)`` of every window."""
        return self.sources[0].brain_shape

    @property
    def sfreq(self) -> float:
        return float(self.sources[0].sfreq)

    def prepare_data(self) -> None:
        """Generate (or find in the cache) each subject's simulated EEG."""
        for source in self.sources:
            source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        """Collect the windows of the chosen splits and hold out ``val_fraction`` of them (seeded)."""
        if self._windows is not None:
            return
        brains, subjects = [], []
        for source in self.sources:
            source.setup()
            for split in self.splits:
                ds = source.dataset(split, "single")
                brains.append(ds.brain)
                subjects.append(ds.subject)
        first = self.sources[0]
        for s in self.spontaneous_subjects:
            brains.append(torch.from_numpy(eeg_spontaneous(
                self.windows_per_subject, first.n_channels, self.sfreq, first.duration, first.snr, self.seed, s,
                first.n_sources or EEG_SOURCES, first.shared)))
            subjects.append(torch.full((self.windows_per_subject,), s, dtype=torch.int64))
        brain, subject = torch.cat(brains), torch.cat(subjects)
        order = torch.from_numpy(np.random.default_rng(self.seed).permutation(len(brain)))
        n_val = max(1, int(round(self.val_fraction * len(brain))))
        val, train = order[:n_val], order[n_val:]
        self._windows = {"train": TensorWindows(brain[train], subject[train]),
                         "val": TensorWindows(brain[val], subject[val])}

    def windows(self, split: str) -> TensorWindows:
        assert self._windows is not None
        return self._windows[split]
