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

from typing import TypedDict

import torch

BRAIN = "brain"
IMAGE = "image"
STIMULUS_ID = "stimulus_id"
SUBJECT = "subject"
LABEL = "label"
INDEX = "index"
SAMPLE_KEYS = (BRAIN, IMAGE, STIMULUS_ID, SUBJECT, LABEL, INDEX)


class Sample(TypedDict):
    """One trial: a brain recording and the image that was shown."""

    brain: torch.Tensor
    image: torch.Tensor
    stimulus_id: int
    subject: int
    label: int
    index: int
