"""Unlabelled fMRI of many subjects (HCP visual cortex, 4-D NIfTI series, extra ``.npy``, GOD training fMRI) for
masked-autoencoder pre-training (DC-MAE stage 1, MinD-Vis SC-MBM).

- :mod:`~brain2img.data.fmri_corpus.files`: the readers: HCP ``HCP_visual_voxel.npz`` subjects, 4-D NIfTI series
  under a 3-D mask, extra ``.npy`` matrices, the training fMRI ``arr_0`` of GOD ``sbj_{k}.npz`` files in a ROI mask
  (never their test fMRI); each described from its header first (:class:`~.files.Source`);
- :mod:`~brain2img.data.fmri_corpus.prep`: pure steps: windows of TRs (the reference's remainder rule), their
  averages, the NaN/Inf check;
- :mod:`~brain2img.data.fmri_corpus.cache`: writing the prepared folder (the raw-EEG window cache's layout, 2-D);
- :class:`FMRICorpusDataModule` (:mod:`~brain2img.data.fmri_corpus.datamodule`): prepares the folder once, serves
  its samples memory-mapped, split by subject.
"""

from brain2img.data.fmri_corpus.datamodule import FMRICorpusDataModule

__all__ = ["FMRICorpusDataModule"]
