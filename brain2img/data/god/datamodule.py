"""GOD, Generic Object Decoding (Horikawa & Kamitani, Nature Communications 2017), one subject, from the MinD-Vis /
DC-MAE ``.npz`` copy (``layout="npz"``, :mod:`brain2img.data.god.files`) or the Kamitani lab's BData release
(``layout="bdata"``, :mod:`brain2img.data.god.bdata`).

Design: 1200 training images (150 categories x 8), each seen once; 50 test images (50 other categories) seen 35
times each; 5 subjects. The served vector is the ROI's voxels in file order (``roi="VC"``: 3444, 4979, 5355, 4656,
6237 voxels for subjects 1-5); the DC-MAE encoder pads it to whole patches itself
(:mod:`brain2img.encoders.voxel_padding`), the datamodule does not.

Normalisation: the MinD-Vis / DC-MAE scalar z-score (one mean and std over a whole matrix,
:func:`brain2img.data.fmri.scalar_zscore`), computed here on the unpadded rows of the training split only and
applied to every row (MinD-Vis ``dataset.py::create_Kamitani_dataset``: all 1200 training rows after wrap-padding to
whole patches, so the repeated columns weigh in; validation rows are held out here like test rows); mean and std are
in the manifest.

Splits (by image): test = the 50 test images; val = a seeded ``val_fraction`` of the training images, stratified by
category (synset), so checkpoints are chosen on validation, never on test; train = the other training images.
Test rows: with ``layout="npz"`` and ``eval_repeats="average"`` the file's averaged rows (``arr_2``, what MinD-Vis
tests on), with ``"single"`` its per-trial rows (``arr_1``, each given its image by ``arr_4``); with
``layout="bdata"`` every test-perception sample (``DataType`` 2), averaged per image by the base for ``"average"``.
Imagery samples (``DataType`` 3) are not served. Labels: ``npz`` the ImageNet class of each image's synset
(``imagenet_class_index.json``), ``bdata`` ``-1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.eeg_imagenet.files import files_digest, load_stimulus_image
from brain2img.data.fmri import scalar_zscore
from brain2img.data.god import bdata as gb
from brain2img.data.god import files as gf
from brain2img.data.god.prep import check_test_design, god_splits, ids_from_floats, image_name, roi_column_map
from brain2img.data.nsd.files import file_fingerprint
from brain2img.data.nsd.readers import resize_square
from brain2img.data.prepared import Prepared, PreparedDataModule, TrialData, save_arrays
from brain2img.data.schema import check_choice

CACHE_VERSION = 1
LAYOUTS = ("npz", "bdata")
SUBJECTS = (1, 2, 3, 4, 5)


class GODDataModule(PreparedDataModule):
    """GOD fMRI of one subject with its stimulus images (see the module docstring).

    ``prepare_data`` checks the source files, reads the ROI's columns, z-scores them with training statistics and
    writes ``cache_dir/god-sbj<k>-<layout>-<hash>`` (brain float32 ``(n_trials, n_voxels)``, images uint8, ids,
    labels, ``trial_row``: the row of each trial in its source matrix or BData file, and a manifest); the hash
    covers the settings and the sources' fingerprints, so a changed file gets a new folder.

    Args:
        root: ``layout="npz"``: the folder of ``sbj_<k>.npz``, ``images_256.npz``, ``imagenet_class_index.json``,
            ``imagenet_training_label.csv`` and ``imagenet_testing_label.csv``; ``"bdata"``: the folder of
            ``Subject<k>.h5``.
        layout: ``"npz"`` (MinD-Vis / DC-MAE) or ``"bdata"`` (the Kamitani lab's BData).
        subject: 1..5 (MinD-Vis reports subject 3).
        roi: the served ROI: a mask key of ``sbj_k.npz`` / ``ROI_<roi>`` of the BData (``VC``, ``LVC``, ``HVC``,
            ``V1`` ... ``V4``, ``LOC``, ``FFA``, ``PPA``).
        image_size: side of the served images (PIL bicubic resize when the source differs; MinD-Vis: 256).
        val_fraction: share of the training images held out for validation, ``0 < val_fraction < 1``.
        test_repeats: trials per test image (GOD: 35), checked against the files.
        image_root: ``layout="bdata"`` only, required: the stimulus JPEGs (see :mod:`brain2img.data.god.bdata`).
        stimulus_key: ``layout="bdata"`` only: metadata key of the stimulus ids (``None``: ``stimulus_id``, else
            ``Label``).
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``cache_dir``, ``batch_size``,
            ``num_workers``, ``eval_repeats``, ``predict_split``, ``seed``).
    """

    cache_name = "god"
    extra_arrays = ("trial_row",)

    def __init__(self, root: str, layout: str = "npz", subject: int = 3, roi: str = "VC", image_size: int = 256,
                 val_fraction: float = 0.1, test_repeats: int = 35, image_root: str | None = None,
                 stimulus_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice(layout, LAYOUTS, "layout")
        check_choice(subject, SUBJECTS, "subject")
        if not 0 < val_fraction < 1 or image_size < 8 or test_repeats < 1:
            raise ValueError(f"need 0 < val_fraction < 1, image_size >= 8 and test_repeats >= 1, got {val_fraction}, "
                             f"{image_size}, {test_repeats}")
        if layout == "npz" and (image_root is not None or stimulus_key is not None):
            raise ValueError("image_root and stimulus_key are read by layout='bdata' only (the npz layout ships its "
                             "images in images_256.npz)")
        if layout == "bdata" and image_root is None:
            raise ValueError("layout='bdata' needs image_root: the folder of the GOD stimulus JPEGs "
                             "(n<synset>_<image>.JPEG; the Kamitani lab shares them on request)")
        self.save_hyperparameters()
        self.root, self.layout, self.subject, self.roi = Path(root), layout, int(subject), str(roi)
        self._image_size, self.val_fraction, self.test_repeats = int(image_size), float(val_fraction), int(test_repeats)
        self.image_root = None if image_root is None else Path(image_root)
        self._sources: dict[str, tuple[Path, str]] | None = None
        self._trial_row: np.ndarray | None = None
        self._bdata_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if layout == "npz":
            self.subject_path = gf.subject_file(self.root, self.subject)
            self._header: gb.BDataHeader | None = None
            self._stimulus_key = None
            mask, masks = gf.read_roi_masks(self.subject_path, self.roi)
        else:
            self.subject_path = gb.bdata_file(self.root, self.subject)
            self._header = gb.read_header(self.subject_path)
            self._stimulus_key = gb.stimulus_key(self._header, stimulus_key)
            mask = self._header.columns(gb.roi_key(self.roi), f"voxels of ROI '{self.roi}'")
            masks = {k[4:]: self._header.value[i] == 1 for i, k in enumerate(self._header.keys) if k.startswith("ROI_")}
        self._mask = mask
        self._roi_columns = roi_column_map(self.roi, mask, masks)

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return "fmri"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        return (int(self._mask.sum()),)

    @property
    def roi_columns(self) -> dict[str, list[int]]:
        """ROI name -> its columns in the served vector: the served ROI (all columns) and every ROI of the file lying
        inside it (with ``roi="VC"``: ``V1`` ... ``PPA``, ``LVC``, ``HVC``), known right after ``__init__``; the CLI
        links it into the method (the Osaka method's ``z_roi: LVC``, ``c_roi: HVC``)."""
        return {name: list(cols) for name, cols in self._roi_columns.items()}

    @property
    def trial_rows(self) -> np.ndarray:
        """Row of every prepared trial in its source (``arr_0`` / ``arr_1`` / ``arr_2`` row, or BData sample)."""
        if self._trial_row is None:
            raise RuntimeError("trial_rows is known after setup()")
        return self._trial_row

    # ----------------------------------------------------------------- sources, config, folder
    def source_files(self) -> dict[str, tuple[Path, bool]]:
        """name -> (path, is large) of every source file (the BData images are fingerprinted together)."""
        if self.layout == "bdata":
            return {"subject": (self.subject_path, True)}
        return {"subject": (self.subject_path, True), "images": (self.root / gf.IMAGES_FILE, True),
                "class_index": (self.root / gf.CLASS_INDEX_FILE, False),
                "train_labels": (self.root / gf.TRAIN_LABELS_FILE, False),
                "test_labels": (self.root / gf.TEST_LABELS_FILE, False)}

    def source_fingerprints(self) -> dict[str, tuple[Path, str]]:
        """name -> (path, fingerprint) of every source (computed once; see
        :func:`brain2img.data.nsd.files.file_fingerprint`); the BData images as one sha256 over their files."""
        if self._sources is None:
            out = {}
            for name, (path, large) in self.source_files().items():
                if not path.is_file():
                    raise FileNotFoundError(f"GOD {name.replace('_', ' ')} file not found: '{path}'")
                out[name] = (path, file_fingerprint(path, large))
            if self.layout == "bdata":
                assert self.image_root is not None
                ids, kinds = self._bdata_images()
                paths = [gb.find_image(self.image_root, sid, kind) for sid, kind in zip(ids, kinds, strict=True)]
                out["images"] = (self.image_root, files_digest(paths))
            self._sources = out
        return self._sources

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared folder (named by this config's hash)."""
        single = self.layout == "bdata" or self.eval_repeats == "single"
        return {"version": CACHE_VERSION, "layout": self.layout, "subject": self.subject, "roi": self.roi,
                "image_size": self._image_size, "val_fraction": self.val_fraction, "test_repeats": self.test_repeats,
                "test_rows": "per_trial" if single else "averaged", "stimulus_key": self._stimulus_key,
                "seed": self.seed, "sources": {k: fp for k, (_, fp) in sorted(self.source_fingerprints().items())}}

    def folder_label(self) -> str:
        return f"god-sbj{self.subject}-{self.layout}"

    # ----------------------------------------------------------------- preparation
    def _bdata_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BData samples served (training and test perception), their DataType and their stimulus ids."""
        assert self._header is not None
        if self._bdata_cache is not None:
            return self._bdata_cache
        dt = gb.read_data_types(self._header)
        rows = np.flatnonzero(dt <= 2)
        where = f"{gb.WHAT} '{self.subject_path}' field '{self._stimulus_key}'"
        ids = ids_from_floats(gb.read_field(self._header, str(self._stimulus_key), "stimulus id per sample")[rows],
                              where, rows)
        for t in (1, 2):
            if not (dt[rows] == t).any():
                raise ValueError(f"{gb.WHAT} '{self.subject_path}': no sample has DataType {t} ({gb.DATA_TYPES[t]})")
        both = np.intersect1d(ids[dt[rows] == 1], ids[dt[rows] == 2])
        if len(both):
            raise ValueError(f"{where}: stimulus id {both[0] // 10**6}.{both[0] % 10**6:06d} is both a training "
                             "(DataType 1) and a test (DataType 2) image")
        self._bdata_cache = rows, dt, ids
        return self._bdata_cache

    def _bdata_images(self) -> tuple[np.ndarray, list[str]]:
        rows, dt, ids = self._bdata_rows()
        uniq, first = np.unique(ids, return_index=True)
        return uniq, ["training" if dt[rows[i]] == 1 else "test" for i in first]

    def _read_npz(self) -> dict[str, Any]:
        train_images, test_images = gf.read_images(self.root / gf.IMAGES_FILE)
        images_path = self.root / gf.IMAGES_FILE
        train_csv, test_csv = self.root / gf.TRAIN_LABELS_FILE, self.root / gf.TEST_LABELS_FILE
        train_ids = gf.read_label_csv(train_csv, len(train_images), images_path, "train_images")
        test_ids = gf.read_label_csv(test_csv, len(test_images), images_path, "test_images")
        both = np.intersect1d(train_ids, test_ids)
        if len(both):
            raise ValueError(f"stimulus id {both[0] // 10**6}.{both[0] % 10**6:06d} is listed in both '{train_csv}' "
                             f"and '{test_csv}'")
        classes = gf.read_class_index(self.root / gf.CLASS_INDEX_FILE)
        json_path = self.root / gf.CLASS_INDEX_FILE
        label_of = np.concatenate([gf.imagenet_labels(train_ids, classes, train_csv, json_path),
                                   gf.imagenet_labels(test_ids, classes, test_csv, json_path)])
        labels = dict(zip(np.concatenate([train_ids, test_ids]).tolist(), label_of.tolist(), strict=True))
        sub = gf.read_subject(self.subject_path, self.roi, self._mask, len(train_images), len(test_images),
                              self.test_repeats, self.eval_repeats == "single", images_path)
        trial_ids = np.concatenate([train_ids[sub.train_image], test_ids[sub.test_image]])
        images = {**{int(i): train_images[k] for k, i in enumerate(train_ids)},
                  **{int(i): test_images[k] for k, i in enumerate(test_ids)}}
        return {"brain": np.concatenate([sub.train, sub.test]), "trial_ids": trial_ids, "test_ids": test_ids,
                "trial_row": np.concatenate([np.arange(len(sub.train)), np.arange(len(sub.test))]),
                "image": lambda sid: images[sid], "label": lambda sid: labels[sid],
                "test_source": f"{sub.test_field} of {self.subject_path.name}"}

    def _read_bdata(self) -> dict[str, Any]:
        assert self._header is not None and self.image_root is not None
        rows, dt, ids = self._bdata_rows()
        test_ids, test_image = np.unique(ids[dt[rows] == 2], return_inverse=True)
        check_test_design(test_image.reshape(-1), len(test_ids), self.test_repeats,
                          f"{gb.WHAT} '{self.subject_path}' (DataType 2, field '{self._stimulus_key}')")
        brain = gb.read_voxels(self._header, rows, self._mask, self.roi, dt)
        kinds = dict(zip(*self._bdata_images(), strict=True))
        root = self.image_root
        return {"brain": brain, "trial_ids": ids, "test_ids": test_ids, "trial_row": rows,
                "image": lambda sid: load_stimulus_image(gb.find_image(root, sid, kinds[sid]), self._image_size),
                "label": lambda sid: -1, "test_source": f"DataType 2 samples of {self.subject_path.name}",
                "imagery_samples": int((dt == 3).sum())}

    def write(self, folder: Path) -> Prepared:
        """Check and read the sources, z-score with the training split's statistics, save the arrays."""
        src = self._read_npz() if self.layout == "npz" else self._read_bdata()
        stim_ids, trial_stimulus = np.unique(src["trial_ids"], return_inverse=True)
        trial_stimulus = trial_stimulus.reshape(-1).astype(np.int64)
        splits = god_splits(stim_ids, src["test_ids"], self.val_fraction, self.seed)
        train_rows = np.isin(trial_stimulus, splits["train"])
        brain, mean, std = scalar_zscore(src["brain"], train_rows, f"GOD {self.subject_path.name} ROI '{self.roi}'")
        images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(stim_ids), self._image_size, self._image_size, 3))
        for k, sid in enumerate(stim_ids.tolist()):
            im = src["image"](sid)
            images[k] = im if im.shape[0] == self._image_size else resize_square(im, self._image_size)
        images.flush()
        del images
        trial_row = np.asarray(src["trial_row"], dtype=np.int64)
        save_arrays(folder, {"brain": brain, "trial_stimulus": trial_stimulus, "stimulus_ids": stim_ids,
                             "labels": np.asarray([src["label"](s) for s in stim_ids.tolist()], dtype=np.int64),
                             "trial_subject": np.full(len(trial_stimulus), self.subject, dtype=np.int64),
                             "trial_row": trial_row})
        details = {
            "sources": {k: {"path": str(p.resolve()), "fingerprint": fp} for k, (p, fp) in
                        self.source_fingerprints().items()},
            "roi": self.roi, "n_voxels": int(self._mask.sum()), "roi_columns": self._roi_columns,
            "voxel_order": "file order of the ROI mask's columns", "test_rows": src["test_source"],
            "zscore": {"kind": "scalar (one mean and std over the matrix)", "rows": "training split", "mean": mean,
                       "std": std},
            "image_names": {str(s): image_name(s) for s in stim_ids.tolist()},
            "counts": {"trials": len(trial_stimulus), "per_split_stimuli": {k: len(v) for k, v in splits.items()},
                       "per_split_trials": {k: int(np.isin(trial_stimulus, v).sum()) for k, v in splits.items()},
                       "imagery_samples_not_served": src.get("imagery_samples")},
        }
        return Prepared(stim_ids.astype(np.int64), trial_stimulus, splits, details,
                        trial_columns={"source_rows": trial_row})

    def loaded(self, data: TrialData, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> TrialData:
        """Keep each trial's source row."""
        self._trial_row = arrays["trial_row"]
        return data
