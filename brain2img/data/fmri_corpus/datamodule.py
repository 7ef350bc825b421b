"""Unlabelled fMRI of many subjects as samples for masked-autoencoder pre-training (DC-MAE stage 1, MinD-Vis SC-MBM).

MinD-Vis (Chen et al., CVPR 2023, github.com/zjc062/mind-vis) and DC-MAE (Sun et al., NeurIPS 2023,
github.com/soinx0629/vis_dec_neurips) pre-train their fMRI masked autoencoder on HCP resting-state fMRI of the
visual cortex (``code/dataset.py::hcp_dataset``; "around 136,000 fMRI samples from 1205 subjects (HCP + GOD)",
MinD-Vis README). Per subject, the reference (``process_voxel_ts``) concatenates the ROIs V1, V2, V3, V4, averages
non-overlapping windows of ``8 // 0.75 = 10`` TRs (120 samples from 1,200 TRs), wrap-pads the voxels to a multiple
of 16 and z-scores the padded matrix with one scalar mean and std. HCP subjects share the CIFTI grayordinates, so
there they all have the same voxel count; with GOD included (``include_kam``: the ``VC`` columns of the training fMRI
``arr_0`` of ``sbj_1..5.npz``, 1,200 rows each, as samples without windowing), everything is then wrap-padded to the
longest subject.

Here, per source file (one subject each): the time series ``(TRs, voxels)`` -> windows of ``window_trs`` TRs
averaged (:mod:`brain2img.data.fmri_corpus.prep`; the rows of extra ``.npy`` matrices and GOD files are samples
already) -> one scalar z-score over the subject's samples
(:func:`brain2img.data.fmri.scalar_zscore`) -> wrap-padded to the longest subject of the corpus
(:func:`brain2img.encoders.voxel_padding.pad_to_length`). Padding to whole patches is the model's job, so
``brain_shape`` is ``(longest voxel count,)``. Samples: ``{"brain": float32 (V,), "subject": int64, "index":
int64}`` (``index``: the position in the split; :attr:`FMRICorpusDataModule.split_indices` maps it to the cached
sample).

Differences from the reference, by design:

- The z-score statistics are those of the subject's own voxels; the reference computes them after padding to a
  multiple of 16, so its first (up to 16) voxels count twice. The padding itself gives the same lengths once the
  model pads to whole patches; the padded columns differ only in which voxels are repeated (the reference pads each
  subject to a multiple of 16 first, then to the common length).
- Subjects are read in sorted (or the given) order, not ``os.listdir`` order; no interpolation augmentation
  (``aug_times``, 1 in the reference's configs).
- GOD subject files (``god_files``) are read through the GOD wing's readers (:mod:`brain2img.data.god.files`), and
  only their ROI masks and training fMRI ``arr_0``: the test fMRI (``arr_1``, ``arr_2``) is never read, so the
  pre-trained encoder has not seen the fMRI of the images it is evaluated on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from brain2img.data.fmri import scalar_zscore
from brain2img.data.fmri_corpus.cache import write_cache
from brain2img.data.fmri_corpus.files import (
    GOD_TRAIN,
    HCP_ROIS,
    UNWINDOWED,
    Source,
    hcp_subject_files,
    plan_array,
    plan_god,
    plan_hcp,
    plan_nifti,
    read_mask,
    read_source,
)
from brain2img.data.fmri_corpus.prep import REMAINDERS, average_windows, window_bounds
from brain2img.data.nsd.files import file_fingerprint
from brain2img.data.raw_eeg.windows import split_windows
from brain2img.data.schema import check_choice
from brain2img.data.window_cache import CachedCorpusDataModule, WindowCache
from brain2img.encoders.voxel_padding import pad_to_length
from brain2img.io import config_hash

FORMAT_VERSION = 1


class FMRICorpusDataModule(CachedCorpusDataModule):
    """Unlabelled fMRI samples of many subjects, prepared once into a memory-mapped folder and split by subject.

    The sources are HCP subjects, 4-D NIfTI series, extra ``.npy`` matrices and GOD subject files, one subject each
    (see the module docstring for the steps and the differences from the reference).

    ``prepare_data`` builds (or reuses) the folder ``cache_dir/fmri_corpus-<hash>``, the hash covering the settings
    and the fingerprint of every source file (size, mtime and sha256 of its first and last MiB; the mask's sha256);
    a reused folder's arrays are checked against their sha256 and no source is read. ``setup`` memory-maps it
    read-only and splits it: with two or more subjects, ``max(1, round(n_subjects * val_fraction))`` whole subjects
    (seeded) are held out for validation; with one subject, a contiguous block of its samples at a seeded position.
    The split is recorded in the folder's manifest.

    Args:
        hcp_root: folder of HCP subjects, ``<hcp_root>/<subject>/HCP_visual_voxel.npz`` with ``V1``..``V4``
            ``(TRs, voxels)`` (as written by DC-MAE's ``data/HCP/preprocess_hcp.py``).
        subjects: HCP subject folders to use, in this order (default: every sub-folder holding the file, sorted).
        rois: the HCP arrays concatenated along the voxels, in this order (default V1..V4: the reference's ``VC``).
        nifti_files: 4-D NIfTI series ``(X, Y, Z, T)``, one subject each, in this order.
        nifti_mask: 3-D NIfTI mask on the series' grid (same shape and affine; nonzero = kept, C order of the mask).
        extra_arrays: ``.npy`` matrices ``(samples, voxels)`` (float), one subject each, added as samples without
            windowing; z-scored per matrix like every subject.
        god_files: MinD-Vis / DC-MAE GOD subject files ``sbj_{k}.npz`` (e.g. ``/data/Kamitani/npz/sbj_1.npz``), one
            subject each (DC-MAE's ``include_kam=True`` uses all 5): the rows of the training fMRI ``arr_0`` (1,200
            per subject) in the columns of the ROI mask ``god_roi`` are added as samples without windowing, z-scored
            per subject and wrap-padded like every subject. The test fMRI ``arr_1`` / ``arr_2`` is never read:
            pre-training must not see the fMRI of the test images.
        god_roi: the key of the boolean ROI mask of ``god_files`` (``VC``: V1-V4, LOC, FFA, PPA; or ``LVC``,
            ``HVC``, ``V1``, ...).
        window_trs: TRs averaged into one sample (the reference's ``8 // 0.75 = 10``).
        remainder: TRs beyond a whole number of windows: ``"spread"`` over the first windows (the reference's
            ``np.array_split``) or ``"drop"``ped (every window exactly ``window_trs`` TRs).
        cache_dir: parent folder of the prepared corpora.
        progress: show a progress bar over subjects while preparing.
        **kwargs: :class:`~brain2img.data.corpus.CorpusDataModule` settings (``val_fraction``: of subjects, in
            ``[0, 1)``; ``seed``: of the split and the training shuffle; ``batch_size``, ``num_workers``).
    """

    corpus_label = "fMRI corpus folder"

    def __init__(self, hcp_root: str | None = None, subjects: list[str] | None = None,
                 rois: Sequence[str] = HCP_ROIS, nifti_files: list[str] | None = None, nifti_mask: str | None = None,
                 extra_arrays: list[str] | None = None, god_files: list[str] | None = None, god_roi: str = "VC",
                 window_trs: int = 10, remainder: str = "spread",
                 cache_dir: str = ".cache/brain2img/fmri_corpus", progress: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()
        if int(window_trs) != window_trs or window_trs < 1:
            raise ValueError(f"window_trs must be a positive integer, got {window_trs!r}")
        check_choice(remainder, REMAINDERS, "remainder")
        if isinstance(rois, str) or not rois or len(set(rois)) != len(rois):
            raise ValueError(f"rois must be a non-empty list of distinct array names, got {rois!r}")
        if subjects is not None and hcp_root is None:
            raise ValueError("subjects names HCP subject folders: set hcp_root too")
        if bool(nifti_files) != (nifti_mask is not None):
            raise ValueError("nifti_files and nifti_mask go together: a list of 4-D series needs its 3-D mask, and a "
                             f"mask needs series (got nifti_files={nifti_files!r}, nifti_mask={nifti_mask!r})")
        self.rois = tuple(str(r) for r in rois)
        self.window_trs, self.remainder = int(window_trs), remainder
        self.hcp_files = hcp_subject_files(hcp_root, subjects) if hcp_root is not None else []
        self.nifti_files = [Path(p) for p in nifti_files or []]
        self.nifti_mask = None if nifti_mask is None else Path(nifti_mask)
        self.extra_arrays = [Path(p) for p in extra_arrays or []]
        if isinstance(god_files, str):
            raise ValueError(f"god_files must be a list of sbj_<k>.npz paths, got the string {god_files!r}")
        if not isinstance(god_roi, str) or not god_roi:
            raise ValueError(f"god_roi must be the name of a ROI mask of the GOD files (e.g. 'VC'), got {god_roi!r}")
        self.god_files, self.god_roi = [Path(p) for p in god_files or []], god_roi
        paths = [str(p) for p in self.nifti_files + self.extra_arrays + self.god_files]
        if len(set(paths)) != len(paths):
            twice = sorted({p for p in paths if paths.count(p) > 1})
            raise ValueError(f"nifti_files, extra_arrays and god_files name a file twice: {twice} (in {paths})")
        if not (self.hcp_files or self.nifti_files or self.extra_arrays or self.god_files):
            raise ValueError("the fMRI corpus is empty: set hcp_root, nifti_files (with nifti_mask), extra_arrays or "
                             "god_files")
        self.cache_dir, self.progress = Path(cache_dir), bool(progress)
        self._sources: list[Source] | None = None
        self._mask: np.ndarray | None = None
        self._identity: dict[str, Any] | None = None

    # ----------------------------------------------------------------- shapes
    @property
    def modality(self) -> str:
        return "fmri"

    @property
    def brain_shape(self) -> tuple[int]:
        """``(n_voxels,)``: the longest subject's voxel count (every subject is wrap-padded to it), known from the
        headers (a GOD file: its ROI mask's count) before any data is read."""
        return (max(s.n_voxels for s in self.sources),)

    @property
    def sources(self) -> list[Source]:
        """Every subject's file, described from its header (read once; all shape errors are raised here)."""
        if self._sources is None:
            sources = [plan_hcp(name, path, self.rois) for name, path in self.hcp_files]
            if self.nifti_files:
                assert self.nifti_mask is not None
                mask, affine = read_mask(self.nifti_mask)
                sources += [plan_nifti(p, mask, affine, self.nifti_mask) for p in self.nifti_files]
                self._mask = mask
            sources += [plan_array(p) for p in self.extra_arrays]
            sources += [plan_god(p, self.god_roi) for p in self.god_files]
            for s in sources:
                if s.kind not in UNWINDOWED:
                    window_bounds(s.n_rows, self.window_trs, self.remainder, self._rows_label(s))
            self._sources = sources
        return self._sources

    @property
    def subject_names(self) -> list[str]:
        """Name of each subject id: HCP folder names, then NIfTI, ``.npy`` and GOD file paths."""
        return [s.name for s in self.sources]

    # ----------------------------------------------------------------- cache identity
    def config(self) -> dict[str, Any]:
        """The settings that determine the prepared samples (``god_roi`` only with ``god_files``, so the folders of
        corpora without GOD keep their names)."""
        config = {"format_version": FORMAT_VERSION, "rois": list(self.rois), "window_trs": self.window_trs,
                  "remainder": self.remainder, "n_voxels": self.brain_shape[0]}
        if self.god_files:
            config["god_roi"] = self.god_roi
        return config

    def identity(self) -> dict[str, Any]:
        """The config, the kind, name and fingerprint of every source, and the mask's sha256 (computed once)."""
        if self._identity is None:
            files = [[s.kind, s.name, file_fingerprint(s.path, large=True)] for s in self.sources]
            mask = None if self.nifti_mask is None else file_fingerprint(self.nifti_mask, large=False)
            self._identity = {"config": self.config(), "files": files, "nifti_mask": mask}
        return self._identity

    @property
    def cache_folder(self) -> Path:
        """``cache_dir/fmri_corpus-<hash of identity()>``."""
        return self.cache_dir / f"fmri_corpus-{config_hash(self.identity())}"

    # ----------------------------------------------------------------- preparation
    def _rows_label(self, source: Source) -> str:
        """Where a source's TRs are, for errors: the file and its field."""
        if source.kind == "hcp":
            return f"HCP file '{source.path}' (arrays {list(self.rois)}, axis 0)"
        return f"nifti_files: '{source.path}' (axis 3)"

    def _samples(self, source: Source) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """One subject's samples (z-scored, unpadded), the first TR (or row) of each, and its manifest record."""
        values = read_source(source, self.rois, self._mask, self.god_roi)
        if source.kind in UNWINDOWED:
            samples, starts, used = values, np.arange(len(values), dtype=np.int64), len(values)
        else:
            bounds = window_bounds(source.n_rows, self.window_trs, self.remainder, self._rows_label(source))
            samples, starts, used = average_windows(values, bounds), bounds[:-1], int(bounds[-1])
        what = f"subject '{source.name}' ('{source.path}', z-scored over all of its {len(samples)} samples)"
        z, mean, std = scalar_zscore(samples, np.ones(len(samples), dtype=bool), what)
        record = {"name": source.name, "kind": source.kind, "path": str(source.path), "n_rows": source.n_rows,
                  "rows_used": used, "n_voxels": source.n_voxels, "n_samples": len(z), "mean": mean, "std": std}
        if source.kind == "god":
            record.update(field=GOD_TRAIN, roi=self.god_roi)
        return z, starts, record

    def _build(self, folder: Path) -> None:
        """Read, window, z-score and pad every subject into a new corpus folder."""
        sources, length = self.sources, self.brain_shape[0]
        counts = [s.n_rows if s.kind in UNWINDOWED else s.n_rows // self.window_trs for s in sources]
        records: list[dict[str, Any]] = []

        def blocks() -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
            bar = tqdm(sources, desc="fMRI corpus -> cache", unit="subject", disable=not self.progress)
            for i, source in enumerate(bar):
                samples, starts, record = self._samples(source)
                fingerprint = self.identity()["files"][i][2]
                records.append({**record, "first_sample": sum(counts[:i]), "fingerprint": fingerprint})
                yield pad_to_length(samples, length), i, starts

        def manifest() -> dict[str, Any]:
            return {"config": self.config(), "n_samples": sum(counts), "subject_names": self.subject_names,
                    "files": records, "nifti_mask": None if self.nifti_mask is None else
                    {"path": str(self.nifti_mask), "sha256": self.identity()["nifti_mask"]}}

        write_cache(folder, (sum(counts), length), blocks(), manifest)

    # ----------------------------------------------------------------- loading
    def _split(self, cache: WindowCache) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        # the windows never overlap: each sample is its own span (start = position, length 1)
        n_files = len(cache.manifest["files"])
        splits, info = split_windows(cache.subjects, np.arange(len(cache.subjects)), 1, n_files, self.val_fraction,
                                     self.seed)
        if "val_files" in info:
            info = {**info, "by": "subject", "val_subjects": [cache.manifest["subject_names"][i]
                                                              for i in info["val_files"]]}
        return splits, info
