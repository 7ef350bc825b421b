"""BOLD5000 (Chang et al., Scientific Data 2019) as MinD-Vis and DC-MAE read it: GLMsingle ROI betas and the scenes.

- :mod:`~brain2img.data.bold5000.files`: where each shipped file lives and its reader (betas per hemisphere and
  ROI, the presentation lists, ``img_dict.npy`` through an unpickler that builds only NumPy arrays, the repeated
  stimuli list), each check naming the file and the field;
- :mod:`~brain2img.data.bold5000.prep`: pure steps (the ROI setting, ROI columns, trial -> image, the split, the
  square resize);
- :mod:`~brain2img.data.bold5000.datamodule`: :class:`BOLD5000DataModule`, which prepares one subject (z-score with
  training statistics) and serves it.
"""

from brain2img.data.bold5000.datamodule import BOLD5000DataModule

__all__ = ["BOLD5000DataModule"]
