"""BOLD5000 (Chang et al., Scientific Data 2019): GLMsingle ROI betas of one subject with the images shown, split
as MinD-Vis (Chen et al., CVPR 2023, github.com/zjc062/mind-vis ``code/dataset.py::create_BOLD5000_dataset``) and
DC-MAE (github.com/soinx0629/vis_dec_neurips, the same function) split it.

The file formats are described (and read) in :mod:`brain2img.data.bold5000.files`. The served vector concatenates
the betas files of the chosen ROIs in the reference's order, EarlyVis, LOC, OPA, PPA, RSC, and within each ROI the
left hemisphere then the right (the reference loops over the ROIs and, within one, over the sorted file names);
:attr:`BOLD5000DataModule.roi_columns` says which columns belong to which ROI. Beta row ``k`` is trial ``k`` of the
presentation lists read in sorted order (``rep_`` stripped). Subject CSI1: 5,254 trials x 1,685 voxels.

Splits (by image): test = the images of ``repeated_stimuli_113_list.txt`` the subject saw (113 for CSI1; the
reference leaves out those CSI4 never saw), served with the voxels averaged over their repeats
(``eval_repeats="average"``, as the reference); train = every other image (4,803 single trials for CSI1). Unlike the
reference, which has no validation split, a seeded ``val_fraction`` of the training images is held out as val
(never a test image), so checkpoints are chosen on validation; training thus sees ``1 - val_fraction`` of the
reference's training images.

Normalisation differs from the reference on purpose: the reference wrap-pads the matrix to whole patches of 16
voxels (1,685 -> 1,696) and then z-scores it with one scalar mean and std over *all* rows, test rows included,
before the split. Here one scalar mean and std (ddof 0) are computed over the *training* rows of the unpadded
matrix only (:func:`brain2img.data.fmri.scalar_zscore`) and applied to every row; they are recorded in the manifest
(``zscore``). Padding to whole patches is the DC-MAE encoder's job (:mod:`brain2img.encoders.voxel_padding`), not
the datamodule's: ``brain_shape`` is the unpadded voxel count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.bold5000 import files as bf
from brain2img.data.bold5000.prep import bold5000_splits, roi_column_map, roi_list, square_image, trial_stimuli
from brain2img.data.fmri import scalar_zscore
from brain2img.data.prepared import Prepared, PreparedDataModule, TrialData, save_arrays
from brain2img.io import sha256_file

CACHE_VERSION = 1
SUBJECTS = (1, 2, 3, 4)


class BOLD5000DataModule(PreparedDataModule):
    """BOLD5000 ROI betas of one subject with their images (see the module docstring).

    ``prepare_data`` validates the sources, z-scores the betas with training statistics and writes ``.npy`` arrays
    (brain float32 ``(n_trials, n_voxels)``, images uint8) and a manifest (image names per stimulus id, split,
    sessions, ROI columns, z-score statistics, sha256 of every source file and output) to
    ``cache_dir/bold5000-csiN-<hash>`` through a temporary folder and a rename; the hash covers this config and
    the sha256 of every source file, so a changed file gets a new folder. A complete folder is reused.

    Stimulus ids are positions in the sorted image names of ``img_dict.npy`` (the same image has the same id for
    every subject); :attr:`stimulus_names` maps them back. Labels are ``-1`` (unknown).

    Args:
        root: the BOLD5000 folder holding ``BOLD5000_GLMsingle_ROI_betas/`` and ``BOLD5000_Stimuli/``.
        subject: 1..4 (CSI1..CSI4; CSI4 has fewer sessions).
        rois: ROI names among EarlyVis, LOC, OPA, PPA, RSC (``None``: all five, the reference); served in that
            order whatever the order given.
        image_size: side of the served square images (PIL bicubic resize at prepare time; 256 keeps the published
            256 x 256 images as they are).
        val_fraction: fraction of the training (non-repeated) images held out as val, ``0 < val_fraction < 1``.
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``seed``: of the val draw and of
            the training shuffle; ``eval_repeats``: ``"average"`` (the reference) or ``"single"``; ``cache_dir``,
            ``batch_size``, ``num_workers``, ``predict_split``).

    Raises:
        ValueError: a setting out of range, or betas files that are not 2-D real arrays with one row count.
        FileNotFoundError: a betas file is missing (the ROI and hemisphere are named).
    """

    cache_name = "bold5000"

    def __init__(self, root: str, subject: int = 1, rois: str | list[str] | None = None, image_size: int = 256,
                 val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if subject not in SUBJECTS:
            raise ValueError(f"subject must be a BOLD5000 subject 1..4 (CSI1..CSI4), got {subject!r}")
        if not 0 < val_fraction < 1 or image_size < 8:
            raise ValueError(f"need 0 < val_fraction < 1 and image_size >= 8, got {val_fraction}, {image_size}")
        self.save_hyperparameters()
        self.root, self.subject = Path(root), int(subject)
        self.rois = roi_list(list(bf.ROIS) if rois is None else rois)
        self._image_size, self.val_fraction = int(image_size), float(val_fraction)
        self.betas_paths = bf.roi_files(self.root, self.subject, self.rois)
        self.img_dict_path = bf.img_dict_file(self.root)
        self.repeated_path = bf.repeated_list_file(self.root)
        self.lists_dir = bf.presentation_dir(self.root, self.subject)
        self._n_trials, widths = self._betas_shapes()
        self._roi_columns = roi_column_map(widths)
        self._widths = {f"{h}{r}": w for (r, h), w in widths.items()}
        self._n_voxels = sum(widths.values())
        self._lists: bf.PresentationLists | None = None
        self._sources: dict[str, tuple[Path, str]] | None = None
        self._stimulus_names: list[str] | None = None

    def _betas_shapes(self) -> tuple[int, dict[tuple[str, str], int]]:
        """Rows (trials) shared by every betas file, and the voxel count of each, from the ``.npy`` headers."""
        widths, first = {}, None
        for (roi, hemisphere), path in self.betas_paths.items():
            rows, widths[(roi, hemisphere)] = bf.betas_shape(path, bf.betas_what(self.subject, hemisphere, roi))
            if first is None:
                first = (rows, path, f"{hemisphere}{roi}")
            elif rows != first[0]:
                raise ValueError(f"{bf.betas_what(self.subject, hemisphere, roi)} '{path}' has {rows} rows (trials) "
                                 f"but '{first[1]}' ({first[2]}) has {first[0]}: every ROI and hemisphere file must "
                                 "hold the same trials")
        assert first is not None
        return first[0], widths

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return "fmri"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        """``(n_voxels,)``, unpadded (1,685 for CSI1 with all five ROIs)."""
        return (self._n_voxels,)

    @property
    def roi_columns(self) -> dict[str, list[int]]:
        """ROI name -> columns of its voxels (both hemispheres, left first) in the served vector, known right
        after ``__init__``; linked by the CLI into methods that read ROIs by name (the Osaka method's ``z_roi`` /
        ``c_roi``). Also written to the manifest."""
        return {name: list(cols) for name, cols in self._roi_columns.items()}

    @property
    def stimulus_names(self) -> dict[int, str]:
        """Stimulus id -> image name (a key of ``img_dict.npy``), after :meth:`setup`."""
        if self._stimulus_names is None or self._data is None:
            raise RuntimeError("stimulus_names is known after setup()")
        return dict(zip(self._data.stimulus_ids.tolist(), self._stimulus_names, strict=True))

    # ----------------------------------------------------------------- sources, config, folder
    def presentation_lists(self) -> bf.PresentationLists:
        """The subject's trials from the presentation lists (read once)."""
        if self._lists is None:
            self._lists = bf.read_presentation_lists(self.lists_dir)
        return self._lists

    def source_fingerprints(self) -> dict[str, tuple[Path, str]]:
        """name -> (path, sha256) of every source file (computed once)."""
        if self._sources is None:
            files = {f"betas_{h}{r}": path for (r, h), path in self.betas_paths.items()}
            files.update(img_dict=self.img_dict_path, repeated_list=self.repeated_path)
            for path in self.presentation_lists().files:
                files[f"list_{path.parent.name}/{path.name}"] = path
            what = {"img_dict": "image dict (img_dict.npy)",
                    "repeated_list": "repeated stimuli list (repeated_stimuli_113_list.txt: the test images)"}
            for name, path in files.items():
                if not path.is_file():
                    raise FileNotFoundError(f"BOLD5000 {what.get(name, name)} file not found: '{path}'")
            self._sources = {name: (path, sha256_file(path)) for name, path in files.items()}
        return self._sources

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared folder (named by this config's hash)."""
        return {"version": CACHE_VERSION, "subject": self.subject, "rois": self.rois, "image_size": self._image_size,
                "val_fraction": self.val_fraction, "seed": self.seed,
                "sources": {name: digest for name, (_, digest) in sorted(self.source_fingerprints().items())}}

    def folder_label(self) -> str:
        return f"bold5000-csi{self.subject}"

    # ----------------------------------------------------------------- preparation
    def write(self, folder: Path) -> Prepared:
        """Validate the sources, then write the images and the z-scored betas."""
        sources = self.source_fingerprints()  # every source exists; the repeated list is checked here first
        lists = self.presentation_lists()
        if len(lists.names) != self._n_trials:
            first = next(iter(self.betas_paths.values()))
            raise ValueError(f"BOLD5000 betas '{first}' (and every chosen ROI file) have {self._n_trials} rows "
                             f"(trials), but the presentation lists under '{self.lists_dir}' name {len(lists.names)} "
                             f"trials ({len(lists.files)} list files): beta row k must be listed trial k")
        repeated = [name for _, name in bf.read_names(self.repeated_path, "BOLD5000 repeated stimuli list")]
        images = bf.read_img_dict(self.img_dict_path)
        image_names = sorted(images)
        stim_ids, trial_stimulus = np.unique(
            trial_stimuli(lists.names, lists.sources, image_names, self.img_dict_path), return_inverse=True)
        trial_stimulus = trial_stimulus.reshape(-1).astype(np.int64)
        names = [image_names[i] for i in stim_ids]
        splits = bold5000_splits(names, repeated, self.val_fraction, self.seed)
        out = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(names), self._image_size, self._image_size, 3))
        for pos, name in enumerate(names):
            out[pos] = square_image(images[name], self._image_size, name, self.img_dict_path)
        out.flush()
        del out, images
        raw = np.concatenate([bf.read_betas(path, bf.betas_what(self.subject, h, r))
                              for (r, h), path in self.betas_paths.items()], axis=1)
        brain, mean, std = scalar_zscore(raw, np.isin(trial_stimulus, splits["train"]),
                                         f"BOLD5000 CSI{self.subject} betas ({', '.join(self.rois)})")
        save_arrays(folder, {"brain": brain, "trial_stimulus": trial_stimulus,
                             "stimulus_ids": stim_ids.astype(np.int64), "labels": np.full(len(names), -1, np.int64),
                             "trial_subject": np.full(len(trial_stimulus), self.subject, dtype=np.int64)})
        shown = set(names)
        details = {
            "sources": {name: {"path": str(path.resolve()), "sha256": digest} for name, (path, digest) in
                        sources.items()},
            "subject": f"CSI{self.subject}", "rois": self.rois, "n_voxels": self._n_voxels,
            "voxels_per_file": self._widths, "roi_columns": self._roi_columns,
            "zscore": {"mean": mean, "std": std, "over": "training rows (train split, single trials), unpadded; one "
                       "scalar for the whole matrix"},
            "stimulus_names": names, "repeated_not_shown": [n for n in repeated if n not in shown],
            "list_files": [str(p.relative_to(self.lists_dir)) for p in lists.files],
            "counts": {"trials": len(trial_stimulus), "stimuli": len(names),
                       "per_split_stimuli": {k: len(v) for k, v in splits.items()},
                       "per_split_trials": {k: int(np.isin(trial_stimulus, v).sum()) for k, v in splits.items()}},
        }
        return Prepared(stim_ids.astype(np.int64), trial_stimulus, splits, details,
                        trial_columns={"sessions": lists.sessions})

    def loaded(self, data: TrialData, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> TrialData:
        """Keep the image name of each stimulus."""
        self._stimulus_names = list(manifest["stimulus_names"])
        return data
