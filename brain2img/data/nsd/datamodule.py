"""The Natural Scenes Dataset (NSD, Allen et al. 2022) from the files it ships, or from MindEye2's re-packaging.

The file formats are described (and read) in :mod:`brain2img.data.nsd.files`. ``layout="nsd"`` reads the NSD tree:
single-trial betas (``betas_fithrf_GLMdenoise_RR``, func1pt8mm, hdf5 or NIfTI) session by session, selects the
voxels of a ROI (``nsdgeneral`` or streams labels; columns in C order of the NIfTI ``(X, Y, Z)`` grid, see
:attr:`NSDDataModule.voxel_xyz`), divides by ``betas_scale`` (300: int16 -> percent signal change) and z-scores
every voxel over the trials of each session (``zscore="session"``, ddof 0, as MindEye's per-session
``StandardScaler``). The 73k id of beta row ``k`` of session ``s`` is the ``k``-th row of session ``s`` in
``responses.tsv`` (rows are in presentation order; checked against ``subjectim[subject, masterordering[trial]]`` of
``nsd_expdesign.mat``). ``layout="mindeye2"`` reads ``betas_all_subj0S_fp32_renorm.hdf5`` (nsdgeneral, already
z-scored per session, so ``zscore`` defaults to ``"none"``), a behaviour ``.npy`` and the 224 px image hdf5; its
rows are taken as the sessions stacked in order (row ``r`` = trial ``r % trials_per_session`` of session
``r // trials_per_session + 1``), which is how ``sessions`` selects trials there.

Splits (by image): test = the shared1000 images (``sharedix``) shown in the chosen sessions (982 images for the 37
public sessions of subjects 1, 2, 5, 7), train = every other image, and val = a seeded ``val_fraction`` of the
training images (never a test image). Training serves single trials. Val/test follow ``eval_repeats``:
``"average"`` averages the voxels over an image's repeats (MindEye1, Takagi, Brain-Diffuser); ``"single"`` serves
every trial with its ``stimulus_id``, which is what MindEye2 needs: it averages the *model outputs* over the
repeats of an image, so a method reproducing MindEye2 must group its test outputs by ``stimulus_id`` and average.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.nsd import files as nf
from brain2img.data.nsd import readers as na
from brain2img.data.nsd.prep import (
    VOXEL_ORDER,
    nsd_splits,
    roi_column_map,
    roi_list,
    select_mindeye2_trials,
    session_list,
    zscore_session,
)
from brain2img.data.prepared import Prepared, PreparedDataModule, TrialData, save_arrays
from brain2img.data.schema import check_choice

CACHE_VERSION = 1
LAYOUTS = ("nsd", "mindeye2")
BETAS_FORMATS = ("hdf5", "nifti")
ZSCORE = ("session", "none")


class NSDDataModule(PreparedDataModule):
    """NSD single-trial betas of one subject with their stimuli (see the module docstring).

    ``prepare_data`` validates the source files, reads the betas one session at a time, and writes memory-mapped
    ``.npy`` arrays (brain float32 ``(n_trials, n_voxels)``, images uint8) and a manifest (73k ids, trial ids,
    sessions, repetitions per image, split, fingerprints of the sources and sha256 of the outputs) to
    ``cache_dir/nsd-subjSS-<layout>-<hash>`` through a temporary folder and a rename. The hash covers this config and
    the source fingerprints (sha256 of the small files; size + mtime + sha256 of the first and last MiB of the
    multi-GB betas and stimulus files). A complete folder is reused.

    Args:
        root: the NSD root (``layout="nsd"``) or the MindEye2 dataset folder (``layout="mindeye2"``); every path
            below that is not given is found under it.
        subject: NSD subject 1..8.
        layout: ``"nsd"`` (the NSD file tree) or ``"mindeye2"``.
        sessions: a count ``n`` (sessions 1..n; 37 = the public set the papers used) or a list of sessions.
        roi: ``"nsdgeneral"``, a streams label (``early``, ``midventral``, ``midlateral``, ``midparietal``,
            ``ventral``, ``lateral``, ``parietal``) or a list of names (union; :attr:`roi_columns` says which columns
            belong to which name). ``layout="mindeye2"``: nsdgeneral only.
        betas_format: ``"hdf5"`` or ``"nifti"`` betas (``layout="nsd"``).
        zscore: ``"session"`` (each voxel over each session's trials) or ``"none"``; ``None`` = ``"session"`` for
            ``layout="nsd"`` and ``"none"`` for ``"mindeye2"`` (already z-scored; ``"session"`` there z-scores over
            the session's trials listed in the behaviour file).
        image_size: side of the served square images (PIL bicubic resize at prepare time).
        val_fraction: fraction of the non-shared images in val.
        trials_per_session: beta rows per session (750 in NSD).
        betas_scale: raw betas are divided by it (300: NSD int16 -> percent signal change; ``layout="nsd"``).
        betas_dir: folder of ``betas_sessionXX.{hdf5,nii.gz}``.
        nsdgeneral_path: ``nsdgeneral.nii.gz``.
        streams_path: ``streams.nii.gz``.
        stimuli_path: ``nsd_stimuli.hdf5`` (``layout="nsd"``) or ``coco_images_224_float16.hdf5`` (``"mindeye2"``).
        expdesign_path: ``nsd_expdesign.mat`` (both layouts: ``sharedix`` defines the test set).
        responses_path: ``responses.tsv``.
        mindeye2_betas_path: ``betas_all_subj0S_fp32_renorm.hdf5``.
        mindeye2_behav_path: behaviour ``.npy`` (required for ``layout="mindeye2"``; see
            :func:`brain2img.data.nsd.readers.read_mindeye2_behav`).
        **kwargs: :class:`~brain2img.data.prepared.PreparedDataModule` settings (``seed``: of the val draw and of
            the training shuffle; ``eval_repeats``: ``"average"`` averages the voxels over an image's repeats,
            ``"single"`` serves every trial (average model outputs per ``stimulus_id`` as MindEye2 does);
            ``cache_dir``, ``batch_size``, ``num_workers``, ``predict_split``).
    """

    cache_name = "nsd"
    extra_arrays = ("trial_session", "trial_row")

    def __init__(
        self,
        root: str | None = None,
        subject: int = 1,
        layout: str = "nsd",
        sessions: list[int] | int = 37,
        roi: str | list[str] = "nsdgeneral",
        betas_format: str = "hdf5",
        zscore: str | None = None,
        image_size: int = 224,
        val_fraction: float = 0.05,
        trials_per_session: int = 750,
        betas_scale: float = 300.0,
        betas_dir: str | None = None,
        nsdgeneral_path: str | None = None,
        streams_path: str | None = None,
        stimuli_path: str | None = None,
        expdesign_path: str | None = None,
        responses_path: str | None = None,
        mindeye2_betas_path: str | None = None,
        mindeye2_behav_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_choice(layout, LAYOUTS, "layout")
        check_choice(betas_format, BETAS_FORMATS, "betas_format")
        zscore = ("session" if layout == "nsd" else "none") if zscore is None else zscore
        if zscore not in ZSCORE:
            raise ValueError(f"zscore must be one of {ZSCORE} or None, got '{zscore}'")
        if not 1 <= subject <= 8:
            raise ValueError(f"subject must be an NSD subject 1..8, got {subject}")
        if not 0 < val_fraction < 1 or image_size < 8 or trials_per_session < 2 or not betas_scale > 0:
            raise ValueError(f"need 0 < val_fraction < 1, image_size >= 8, trials_per_session >= 2 and betas_scale > 0,"
                             f" got {val_fraction}, {image_size}, {trials_per_session}, {betas_scale}")
        self.save_hyperparameters()
        self.root = None if root is None else Path(root)
        self.subject, self.layout, self.sessions = int(subject), layout, session_list(sessions)
        self.roi, self.betas_format, self.zscore = roi_list(roi), betas_format, zscore
        self._image_size, self.val_fraction = int(image_size), float(val_fraction)
        self.trials_per_session, self.betas_scale = int(trials_per_session), float(betas_scale)
        self._sources: dict[str, tuple[Path, str]] | None = None
        self._trial_session: np.ndarray | None = None
        self._trial_row: np.ndarray | None = None
        self._design: nf.ExpDesign | None = None
        self._mindeye2_rows: np.ndarray | None = None
        s = self.subject
        self.expdesign_path = self._path(expdesign_path, lambda r: nf.expdesign_file(r), "expdesign_path")
        if layout == "nsd":
            self.betas_dir = self._path(betas_dir, lambda r: nf.betas_file(r, s, 1, betas_format).parent, "betas_dir")
            self.stimuli_path = self._path(stimuli_path, nf.stimuli_file, "stimuli_path")
            self.responses_path = self._path(responses_path, lambda r: nf.responses_file(r, s), "responses_path")
            self.nsdgeneral_path = self._path(nsdgeneral_path, lambda r: nf.roi_file(r, s, "nsdgeneral"),
                                              "nsdgeneral_path")
            self.streams_path = self._path(streams_path, lambda r: nf.roi_file(r, s, "streams"), "streams_path")
            self._mask = nf.roi_mask(self.roi, self.nsdgeneral_path, self.streams_path)
            self._voxel_xyz: np.ndarray | None = np.argwhere(self._mask).astype(np.int64)
            self._n_voxels = int(self._mask.sum())
            masks = {self.roi[0]: self._mask} if len(self.roi) == 1 else {
                name: nf.roi_mask([name], self.nsdgeneral_path, self.streams_path) for name in self.roi}
            self._roi_columns = roi_column_map(self.roi, self._mask, masks)
        else:
            if self.roi != ["nsdgeneral"]:
                raise ValueError(f"layout='mindeye2' holds nsdgeneral voxels only, got roi={self.roi}")
            if mindeye2_behav_path is None:
                raise ValueError("layout='mindeye2' needs mindeye2_behav_path: a .npy (n_trials, 2) = [73k id "
                                 "(0-based), betas row], or MindEye2's behav array (n_trials, 1, 17) gathered from "
                                 "its webdataset tars (the behaviour is not shipped as a separate file)")
            self.mindeye2_betas_path = self._path(
                mindeye2_betas_path, lambda r: r / f"betas_all_subj{s:02d}_fp32_renorm.hdf5", "mindeye2_betas_path")
            self.mindeye2_behav_path = Path(mindeye2_behav_path)
            self.stimuli_path = self._path(stimuli_path, lambda r: r / "coco_images_224_float16.hdf5", "stimuli_path")
            self._mask = None
            self._voxel_xyz = None
            self._n_voxels = na.mindeye2_betas_shape(self.mindeye2_betas_path)[1]
            self._roi_columns = {"nsdgeneral": list(range(self._n_voxels))}

    def _path(self, given: str | None, under_root: Any, name: str) -> Path:
        if given is not None:
            return Path(given)
        if self.root is None:
            raise ValueError(f"NSDDataModule: {name} is not given and there is no root to find it under")
        return Path(under_root(self.root))

    # ----------------------------------------------------------------- interface
    @property
    def modality(self) -> str:
        return "fmri"

    @property
    def brain_shape(self) -> tuple[int, ...]:
        return (self._n_voxels,)

    @property
    def voxel_xyz(self) -> np.ndarray | None:
        """int64 ``(n_voxels, 3)``: the NIfTI ``(x, y, z)`` of every brain column (``None`` for MindEye2)."""
        return self._voxel_xyz

    @property
    def roi_columns(self) -> dict[str, list[int]]:
        """ROI name -> column indices of its voxels in the served brain vector (known right after ``__init__``).

        With ``roi=[a, b, ...]`` the served vector is the union of the ROIs in :data:`VOXEL_ORDER`; this says which
        columns belong to which ROI (a voxel in two named ROIs is listed under both). The CLI links it into the
        method (``model.roi_columns``), so the Osaka method's ``z_roi: early`` / ``c_roi: ventral`` pick their
        columns by name. Also written to the manifest.
        """
        return {name: list(cols) for name, cols in self._roi_columns.items()}

    @property
    def trial_sessions(self) -> np.ndarray:
        """Session (1-based) of every prepared trial (after :meth:`setup`)."""
        if self._trial_session is None:
            raise RuntimeError("trial_sessions is known after setup()")
        return self._trial_session

    @property
    def trial_rows(self) -> np.ndarray:
        """Beta row of every prepared trial within its session (0-based; after :meth:`setup`)."""
        if self._trial_row is None:
            raise RuntimeError("trial_rows is known after setup()")
        return self._trial_row

    # ----------------------------------------------------------------- sources, config, folder
    def betas_path(self, session: int) -> Path:
        """The betas file of one session (``layout="nsd"``)."""
        return self.betas_dir / nf.betas_file(".", self.subject, session, self.betas_format).name

    def source_files(self) -> dict[str, tuple[Path, bool]]:
        """Every source file read by :meth:`prepare_data`: name -> (path, is large)."""
        files: dict[str, tuple[Path, bool]] = {"expdesign": (self.expdesign_path, False)}
        if self.layout == "mindeye2":
            files.update(betas=(self.mindeye2_betas_path, True), behav=(self.mindeye2_behav_path, False),
                         stimuli=(self.stimuli_path, True))
            return files
        files.update(responses=(self.responses_path, False), stimuli=(self.stimuli_path, True))
        if "nsdgeneral" in self.roi:
            files["nsdgeneral"] = (self.nsdgeneral_path, False)
        if any(r in nf.STREAMS_LABELS for r in self.roi):
            files["streams"] = (self.streams_path, False)
        for s in self.sessions:
            files[f"betas_session{s:02d}"] = (self.betas_path(s), True)
        return files

    def source_fingerprints(self) -> dict[str, tuple[Path, str]]:
        """name -> (path, fingerprint) of every source file (computed once; see
        :func:`brain2img.data.nsd.files.file_fingerprint`)."""
        if self._sources is None:
            out = {}
            for name, (path, large) in self.source_files().items():
                if not path.is_file():
                    what = f"betas file of session {int(name[-2:])}" if name.startswith("betas_session") else name
                    raise FileNotFoundError(f"NSD {what} not found: '{path}'")
                out[name] = (path, nf.file_fingerprint(path, large))
            self._sources = out
        return self._sources

    def cache_config(self) -> dict[str, Any]:
        """What determines the prepared folder (named by this config's hash)."""
        return {
            "version": CACHE_VERSION, "layout": self.layout, "subject": self.subject, "sessions": self.sessions,
            "roi": self.roi, "betas_format": self.betas_format if self.layout == "nsd" else None,
            "zscore": self.zscore, "image_size": self._image_size, "val_fraction": self.val_fraction,
            "trials_per_session": self.trials_per_session,
            "betas_scale": self.betas_scale if self.layout == "nsd" else None, "seed": self.seed,
            "sources": {name: fp for name, (_, fp) in sorted(self.source_fingerprints().items())},
        }

    def folder_label(self) -> str:
        return f"nsd-subj{self.subject:02d}-{self.layout}"

    # ----------------------------------------------------------------- preparation
    def _nsd_trials(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """73k id, session and row of every trial of the chosen sessions (``layout="nsd"``)."""
        ids = nf.read_responses(self.responses_path, self.subject, self.sessions, self.trials_per_session)
        assert self._design is not None
        nf.check_against_design(ids, self._design, self.subject, self.trials_per_session, self.responses_path,
                                self.expdesign_path)
        n = self.trials_per_session
        return (np.concatenate([ids[s] for s in self.sessions]), np.repeat(np.asarray(self.sessions), n),
                np.tile(np.arange(n), len(self.sessions)))

    def _mindeye2_trials(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """73k id, session and row within the session of the chosen trials, ordered by betas row."""
        ids, rows = na.read_mindeye2_behav(self.mindeye2_behav_path)
        n_rows = na.mindeye2_betas_shape(self.mindeye2_betas_path)[0]
        ids, session, rows = select_mindeye2_trials(ids, rows, self.sessions, self.trials_per_session, n_rows,
                                                    self.mindeye2_behav_path, self.mindeye2_betas_path)
        # the hdf5 rows of every session are read below; the 'row' kept per trial is the one within its session
        self._mindeye2_rows = rows
        return ids, session, rows % self.trials_per_session

    def _write_brain(self, path: Path, trial_session: np.ndarray) -> None:
        """Read (and z-score) the betas session by session into a memory-mapped float32 ``.npy``."""
        brain = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                          shape=(len(trial_session), self._n_voxels))
        for s in self.sessions:
            idx = np.flatnonzero(trial_session == s)
            if self.layout == "nsd":
                source = self.betas_path(s)
                x = na.read_session_betas(source, self.betas_format, self._mask, self.trials_per_session, s,
                                          self.betas_scale)
            else:
                assert self._mindeye2_rows is not None
                source = self.mindeye2_betas_path
                x = na.read_mindeye2_rows(source, self._mindeye2_rows[idx], self.trials_per_session)
            if self.zscore == "session":
                x = zscore_session(x, s, str(source), self._voxel_xyz)
            brain[idx] = x
        brain.flush()
        del brain

    def write(self, folder: Path) -> Prepared:
        """Validate the source files, then write the images and the (z-scored) betas session by session."""
        self._design = nf.read_expdesign(self.expdesign_path)
        trial_ids, trial_session, trial_row = self._nsd_trials() if self.layout == "nsd" else self._mindeye2_trials()
        stim_ids, trial_stimulus = np.unique(trial_ids, return_inverse=True)
        trial_stimulus = trial_stimulus.reshape(-1).astype(np.int64)
        splits = nsd_splits(stim_ids, self._design.shared, self.val_fraction, self.seed)
        images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(stim_ids), self._image_size, self._image_size, 3))
        read = na.read_stimuli if self.layout == "nsd" else na.read_mindeye2_images
        read(self.stimuli_path, stim_ids, self._image_size, out=images)
        images.flush()
        del images
        self._write_brain(folder / "brain.npy", trial_session)
        arrays = {"trial_stimulus": trial_stimulus, "stimulus_ids": stim_ids.astype(np.int64),
                  "labels": np.full(len(stim_ids), -1, dtype=np.int64),
                  "trial_subject": np.full(len(trial_ids), self.subject, dtype=np.int64),
                  "trial_session": trial_session.astype(np.int64), "trial_row": trial_row.astype(np.int64)}
        if self._voxel_xyz is not None:
            arrays["voxel_xyz"] = self._voxel_xyz
        save_arrays(folder, arrays)
        return Prepared(stim_ids.astype(np.int64), trial_stimulus, splits, self._details(trial_stimulus, splits),
                        trial_columns={"sessions": trial_session, "session_rows": trial_row})

    def _details(self, trial_stimulus: np.ndarray, splits: dict[str, np.ndarray]) -> dict[str, Any]:
        """Sources, sessions, ROI columns and counts for the manifest."""
        kinds = dict(self.source_files())
        return {
            "sources": {name: {"path": str(path.resolve()), "fingerprint": fp,
                               "fingerprint_kind": "size:mtime_ns:sha256(first+last MiB)" if kinds[name][1] else
                               "sha256"} for name, (path, fp) in self.source_fingerprints().items()},
            "sessions": self.sessions, "n_voxels": self._n_voxels, "roi_columns": self._roi_columns,
            "voxel_order": VOXEL_ORDER if self.layout == "nsd" else "as in the MindEye2 betas file",
            "counts": {"trials": len(trial_stimulus), "stimuli": sum(len(v) for v in splits.values()),
                       "per_split_stimuli": {k: len(v) for k, v in splits.items()},
                       "per_split_trials": {k: int(np.isin(trial_stimulus, v).sum()) for k, v in splits.items()}},
        }

    def loaded(self, data: TrialData, arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> TrialData:
        """Keep each trial's session and row."""
        self._trial_session, self._trial_row = arrays["trial_session"], arrays["trial_row"]
        return data
