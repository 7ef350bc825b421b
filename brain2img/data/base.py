"""The datamodule interface every dataset implements (simulated, user arrays, EEG-ImageNet, NSD).

Shapes are known right after ``__init__`` (the CLI links ``data.brain_shape`` into the model before any data is
generated or loaded). Splits are by stimulus. Training serves single trials; val/test serve one sample per
(stimulus, subject) with the brain averaged over repeats (``eval_repeats="average"``) or single trials.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from brain2img.data import schema
from brain2img.data.schema import BrainSignature, check_choice
from brain2img.data.splits import SPLITS

EVAL_REPEATS = ("average", "single")


@dataclass
class TrialData:
    """Everything a datamodule serves, as loaded by :meth:`BrainImageDataModule._load`.

    Attributes:
        brain: float32 ``(n_trials, *brain_shape)``.
        images: uint8 ``(n_stimuli, H, W, 3)``, one per stimulus position.
        trial_stimulus: int64 ``(n_trials,)``, stimulus position of each trial.
        stimulus_ids: int64 ``(n_stimuli,)``, the id of each stimulus position.
        labels: int64 ``(n_stimuli,)``, class per stimulus (``-1`` if unknown).
        trial_subject: int64 ``(n_trials,)``, subject of each trial.
        splits: sorted stimulus positions per split name.
    """

    brain: np.ndarray
    images: np.ndarray
    trial_stimulus: np.ndarray
    stimulus_ids: np.ndarray
    labels: np.ndarray
    trial_subject: np.ndarray
    splits: dict[str, np.ndarray]


class BrainImageDataset(Dataset):
    """Samples of one split: ``brain[i]`` with the image of stimulus position ``stimulus[i]``.

    Args:
        brain: float32 ``(n, *brain_shape)``.
        stimulus: int64 ``(n,)`` stimulus positions into ``images``.
        subject: int64 ``(n,)``.
        images: uint8 ``(n_stimuli, 3, H, W)`` (converted to float in [0, 1] per item).
        stimulus_ids: int64 ``(n_stimuli,)``.
        labels: int64 ``(n_stimuli,)``.
    """

    def __init__(self, brain: torch.Tensor, stimulus: torch.Tensor, subject: torch.Tensor, images: torch.Tensor,
                 stimulus_ids: torch.Tensor, labels: torch.Tensor) -> None:
        self.brain, self.stimulus, self.subject = brain, stimulus, subject
        self.images, self.stimulus_ids, self.labels = images, stimulus_ids, labels

    def __len__(self) -> int:
        return len(self.brain)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        s = int(self.stimulus[i])
        return {
            schema.BRAIN: self.brain[i],
            schema.IMAGE: self.images[s].float() / 255.0,
            schema.STIMULUS_ID: int(self.stimulus_ids[s]),
            schema.SUBJECT: int(self.subject[i]),
            schema.LABEL: int(self.labels[s]),
            schema.INDEX: int(i),
        }


class UnpaddedDistributedSampler(DistributedSampler):
    """Each rank gets ``indices[rank::world_size]``: every sample exactly once per epoch, no padding duplicates
    (ranks may get one sample more or less). Lightning keeps it because it is a ``DistributedSampler``."""

    def __iter__(self):
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.dataset), generator=gen).tolist()
        else:
            order = list(range(len(self.dataset)))
        return iter(order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def average_repeats(brain: np.ndarray, stimulus: np.ndarray, subject: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average trials that share (stimulus, subject); groups are ordered by stimulus then subject."""
    keys = np.stack([stimulus, subject], axis=1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    flat = brain.reshape(len(brain), -1).astype(np.float64)[order]
    means = np.add.reduceat(flat, starts, axis=0) / np.diff(np.r_[starts, len(order)])[:, None]
    return means.astype(np.float32).reshape(len(groups), *brain.shape[1:]), groups[:, 0], groups[:, 1]


class BrainImageDataModule(LightningDataModule, BrainSignature):
    """Base class of every brain2img datamodule (see the module docstring).

    Args:
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        eval_repeats: ``"average"`` (one sample per stimulus and subject, brain averaged over its repeats) or
            ``"single"`` (every trial) for val/test/predict.
        predict_split: split served by ``predict_dataloader``: ``"train"``, ``"val"`` or ``"test"``.
        seed: seed of the split and of the training shuffle.
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0, eval_repeats: str = "average",
                 predict_split: str = "test", seed: int = 0) -> None:
        super().__init__()
        check_choice(eval_repeats, EVAL_REPEATS, "eval_repeats")
        check_choice(predict_split, SPLITS, "predict_split")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.eval_repeats, self.predict_split, self.seed = eval_repeats, predict_split, int(seed)
        self.exact_distributed_epoch = False  # set by methods whose statistics must see each trial exactly once
        self._data: TrialData | None = None
        self._images: torch.Tensor | None = None
        self._image_size: int = 0
        self._sfreq: float | None = None

    # ----------------------------------------------------------------- to implement
    @property
    def image_size(self) -> int:
        """Side of the square stimulus images in pixels (a subclass sets ``_image_size``)."""
        return self._image_size

    @property
    def sfreq(self) -> float | None:
        """EEG sampling frequency in Hz (``None`` for fMRI; a subclass sets ``_sfreq``)."""
        return self._sfreq if self.modality == "eeg" else None

    @property
    @abstractmethod
    def manifest_path(self) -> Path:
        """Where the split manifest is (or will be) written."""


    @abstractmethod
    def _load(self) -> TrialData:
        """Load the prepared data (called by :meth:`setup`, after :meth:`prepare_data`)."""

    # ----------------------------------------------------------------- loading
    def setup(self, stage: str | None = None) -> None:
        """Load the data once (every stage shares it) and check it against the declared shapes."""
        if self._data is not None:
            return
        data = self._load()
        if tuple(data.brain.shape[1:]) != tuple(self.brain_shape):
            raise ValueError(f"{type(self).__name__}: loaded brain data has sample shape {tuple(data.brain.shape[1:])}"
                             f" but brain_shape is {tuple(self.brain_shape)}")
        if data.images.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(f"{type(self).__name__}: loaded images have shape {data.images.shape[1:]}, expected "
                             f"({self.image_size}, {self.image_size}, 3)")
        self._data = data
        self._images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))

    def _ensure_loaded(self) -> TrialData:
        if self._data is None:
            self.prepare_data()
            self.setup()
        assert self._data is not None
        return self._data

    def dataset(self, split: str, repeats: str = "single") -> BrainImageDataset:
        """Samples of ``split`` with single trials (``repeats="single"``) or repeats averaged (``"average"``)."""
        check_choice(split, SPLITS, "split")
        check_choice(repeats, EVAL_REPEATS, "repeats")
        d = self._ensure_loaded()
        trials = np.flatnonzero(np.isin(d.trial_stimulus, d.splits[split]))
        brain, stim, subj = d.brain[trials], d.trial_stimulus[trials], d.trial_subject[trials]
        if repeats == "average":
            brain, stim, subj = average_repeats(brain, stim, subj)
        return BrainImageDataset(torch.from_numpy(np.ascontiguousarray(brain, dtype=np.float32)),
                                 torch.from_numpy(stim.astype(np.int64)), torch.from_numpy(subj.astype(np.int64)),
                                 self._images, torch.from_numpy(d.stimulus_ids), torch.from_numpy(d.labels))

    def stimulus_images(self, split: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The unique stimuli of one split or several (e.g. ``("train", "val")`` to train an image generator).

        Returns:
            images float32 ``(N, 3, H, W)`` in ``[0, 1]`` and their stimulus ids int64 ``(N,)``, in id order.
        """
        names = (split,) if isinstance(split, str) else tuple(split)
        bad = [s for s in names if s not in SPLITS]
        if bad or not names:
            raise ValueError(f"split must be one or more of {SPLITS}, got {split!r}")
        d = self._ensure_loaded()
        pos = np.unique(np.concatenate([d.splits[s] for s in names]))
        pos = pos[np.argsort(d.stimulus_ids[pos], kind="stable")]
        assert self._images is not None
        return self._images[torch.from_numpy(pos)].float() / 255.0, torch.from_numpy(d.stimulus_ids[pos].copy())

    # ----------------------------------------------------------------- loaders
    def _loader(self, dataset: BrainImageDataset, shuffle: bool) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        sampler = None
        if shuffle:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed))
        if self.exact_distributed_epoch and trainer is not None and trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                                 shuffle=shuffle, seed=self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Single training trials, shuffled with a seeded generator."""
        return self._loader(self.dataset("train", "single"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation samples following ``eval_repeats``, in a fixed order."""
        return self._loader(self.dataset("val", self.eval_repeats), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test samples following ``eval_repeats``, in a fixed order."""
        return self._loader(self.dataset("test", self.eval_repeats), shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Samples of ``predict_split`` following ``eval_repeats``, in a fixed order."""
        return self._loader(self.dataset(self.predict_split, self.eval_repeats), shuffle=False)
