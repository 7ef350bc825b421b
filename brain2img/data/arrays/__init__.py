"""Researchers' own ``.npy`` files: brain responses and the images shown, one row per trial.

- :mod:`~brain2img.data.arrays.validation`: the checks of user arrays (shapes, counts, layouts, NaN/Inf);
- :class:`ArrayDataModule`: validates, prepares and serves them.
"""

from brain2img.data.arrays.datamodule import ArrayDataModule

__all__ = ["ArrayDataModule"]
