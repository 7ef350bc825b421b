"""The Natural Scenes Dataset (Allen et al. 2022) from the files it ships, or from MindEye2's re-packaging.

- :mod:`~brain2img.data.nsd.files`: the small files (expdesign, responses, ROI volumes) and where each lives;
- :mod:`~brain2img.data.nsd.readers`: the large arrays (betas per session, the stimulus brick, MindEye2's hdf5);
- :mod:`~brain2img.data.nsd.prep`: pure steps (sessions, ROIs and their columns, session z-score, the split);
- :mod:`~brain2img.data.nsd.captions`: 73k id -> COCO captions (the Osaka method's text target);
- :class:`NSDDataModule`: prepares one subject and serves it.
"""

from brain2img.data.nsd.datamodule import NSDDataModule

__all__ = ["NSDDataModule"]
