"""The one sample schema every datamodule yields, so that every method reads every dataset the same way.

A sample is a plain ``dict`` (collates with the default collate function) with these keys:

- ``brain``: float32 tensor, EEG ``(n_channels, n_times)`` or fMRI ``(n_voxels,)``.
- ``image``: float32 tensor ``(3, H, W)`` in ``[0, 1]``: the stimulus that was shown.
- ``stimulus_id``: int64, identifies the stimulus image (repetitions of one image share it).
- ``subject``: int64, subject index within the dataset.
- ``label``: int64, a semantic class of the stimulus (for the simulated set: its source photo), ``-1`` if unknown.
- ``index``: int64, the sample's position in its split; unique within a split, used to de-duplicate under DDP.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypedDict

import torch

BRAIN = "brain"
IMAGE = "image"
STIMULUS_ID = "stimulus_id"
SUBJECT = "subject"
LABEL = "label"
INDEX = "index"
SAMPLE_KEYS = (BRAIN, IMAGE, STIMULUS_ID, SUBJECT, LABEL, INDEX)


def check_choice(value: Any, choices: tuple[Any, ...], name: str) -> None:
    """Refuse a setting that is not one of ``choices``, naming the setting (``name``) and the choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


class BrainSignature(ABC):
    """What every datamodule tells a model before any data is read (the CLI links these into the method)."""

    @property
    @abstractmethod
    def modality(self) -> str:
        """``"eeg"`` or ``"fmri"``."""

    @property
    @abstractmethod
    def brain_shape(self) -> tuple[int, ...]:
        """Shape of one brain sample: ``(n_voxels,)`` or ``(n_channels, n_times)``."""

    @property
    def sfreq(self) -> float | None:
        """EEG sampling frequency in Hz (``None`` for fMRI)."""
        return None

    @property
    def roi_columns(self) -> dict[str, list[int]]:
        """ROI name -> columns of its voxels in the served brain vector (linked by the CLI into methods that read
        ROIs separately, e.g. the Osaka method's ``z_roi``/``c_roi``); empty for datasets without named ROIs."""
        return {}


class Sample(TypedDict):
    """One trial: a brain recording and the image that was shown."""

    brain: torch.Tensor
    image: torch.Tensor
    stimulus_id: int
    subject: int
    label: int
    index: int
