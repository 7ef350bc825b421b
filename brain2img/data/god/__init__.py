"""GOD, Generic Object Decoding (Horikawa & Kamitani, Nature Communications 2017; github.com/KamitaniLab/
GenericObjectDecoding): fMRI of 5 subjects viewing 1200 training and 50 test ImageNet images, the fMRI set of
MinD-Vis (Chen et al., CVPR 2023) and DC-MAE (Sun et al., NeurIPS 2023).

- :mod:`~brain2img.data.god.files`: the MinD-Vis / DC-MAE ``.npz`` copy (``sbj_k.npz``: ``arr_0`` ... ``arr_4`` and
  the ROI masks; ``images_256.npz``; the label csvs; ``imagenet_class_index.json``), one checked reader per file;
- :mod:`~brain2img.data.god.bdata`: the Kamitani lab's ``Subject<k>.h5`` BData files, read with h5py as bdpy
  reads them (bdpy supports Python < 3.12 only, so it is a test dependency, not a library one), and the stimulus
  JPEGs under ``image_root``;
- :mod:`~brain2img.data.god.prep`: pure steps: stimulus ids, the split, ROI columns, checks of the test design;
- :class:`GODDataModule` (:mod:`~brain2img.data.god.datamodule`): prepares one subject and serves it.
"""

from brain2img.data.god.datamodule import GODDataModule

__all__ = ["GODDataModule"]
