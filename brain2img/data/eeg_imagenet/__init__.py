"""EEG-ImageNet (Spampinato et al., CVPR 2017), the EEG set of DreamDiffusion, from the files its publishers ship.

- :mod:`~brain2img.data.eeg_imagenet.files`: the ``.pth`` EEG and split files and the stimulus JPEGs;
- :mod:`~brain2img.data.eeg_imagenet.prep`: pure steps (slicing and resampling, block positions, the block-aware
  split, the shuffled-pairs control);
- :class:`EEGImageNetDataModule`: prepares the records and serves them.
"""

from brain2img.data.eeg_imagenet.datamodule import EEGImageNetDataModule

__all__ = ["EEGImageNetDataModule"]
