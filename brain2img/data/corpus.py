"""The base of unpaired pre-training corpora: brain windows without images, split into train and val.

Self-supervised pre-training (DreamDiffusion's masked signal modelling, DC-MAE's stage 1) reads brain data that
has no stimulus: raw EEG recordings (:mod:`brain2img.data.raw_eeg`), simulated subjects
(:class:`brain2img.data.simulated.SimulatedEEGCorpus`), unlabelled fMRI. A corpus subclasses
:class:`CorpusDataModule` and implements the shapes and :meth:`CorpusDataModule.windows`; this base owns the
settings every corpus shares, the seeded training shuffle and the loaders.

Samples: ``{"brain": float32 brain_shape, "subject": int64, "index": int64}`` (``index``: position in the split).
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from brain2img.data import schema
from brain2img.data.schema import BrainSignature, check_choice

CORPUS_SPLITS = ("train", "val")


class TensorWindows(Dataset):
    """Windows held in memory: ``brain (n, *brain_shape)`` float32 and ``subject (n,)`` int64 tensors."""

    def __init__(self, brain: torch.Tensor, subject: torch.Tensor) -> None:
        if len(brain) != len(subject):
            raise ValueError(f"TensorWindows: {len(brain)} windows but {len(subject)} subjects")
        self.brain, self.subject = brain, subject

    def __len__(self) -> int:
        return len(self.brain)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        return {schema.BRAIN: self.brain[i], schema.SUBJECT: int(self.subject[i]), schema.INDEX: int(i)}


class CorpusDataModule(LightningDataModule, BrainSignature):
    """Base of unpaired brain corpora for pre-training (see the module docstring).

    Args:
        val_fraction: share of the corpus held out for the validation loss (how it is held out is the corpus's
            choice: by recording, by window).
        batch_size: windows per batch.
        num_workers: DataLoader worker processes.
        seed: seed of the train/val split and of the training shuffle.
    """

    def __init__(self, val_fraction: float = 0.1, batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction, self.batch_size = float(val_fraction), int(batch_size)
        self.num_workers, self.seed = int(num_workers), int(seed)

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def windows(self, split: str) -> Dataset:
        """The windows of ``"train"`` or ``"val"`` (called after :meth:`setup`)."""

    # ----------------------------------------------------------------- shared
    def dataset(self, split: str) -> Dataset:
        """The windows of ``"train"`` or ``"val"`` (sets up the corpus first if needed)."""
        check_choice(split, CORPUS_SPLITS, "split")
        self.setup()
        return self.windows(split)

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        # the seeded generator is the DataLoader's: it draws the shuffle and the workers' base seed, so the global
        # torch RNG (masking, dropout) sees the same draws whatever the corpus
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Training windows, shuffled with a generator seeded by ``seed``."""
        return self._loader(self.dataset("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation windows in a fixed order."""
        return self._loader(self.dataset("val"), shuffle=False)
