"""Unlabelled raw EEG recordings (EDF, BDF, FIF, BrainVision) as windows for masked-signal pre-training.

- :mod:`~brain2img.data.raw_eeg.files`: resolving recordings, checksums, reading through MNE, picking channels;
- :mod:`~brain2img.data.raw_eeg.windows`: pure windowing, channel mapping, z-scoring and the train/val split;
- :mod:`~brain2img.data.window_cache`: the memory-mapped window cache;
- :class:`RawEEGDataModule`: builds the cache once and serves its windows.
"""

from brain2img.data.raw_eeg.datamodule import RawEEGDataModule

__all__ = ["RawEEGDataModule"]
