"""Reading and validating the files the Natural Scenes Dataset (NSD, Allen et al. 2022) ships, and the MindEye2
re-packaging of them.

NSD layout (paths relative to the NSD root, ``SS`` = two-digit subject, ``XX`` = two-digit session):

- ``nsddata_betas/ppdata/subjSS/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_sessionXX.hdf5``: dataset ``betas``,
  ``(750, Z, Y, X)`` int16 (the hdf5 axis order is the reverse of the NIfTI ``(X, Y, Z)``), percent signal change
  x 300. Or ``betas_sessionXX.nii.gz``: ``(X, Y, Z, 750)``.
- ``nsddata/ppdata/subjSS/func1pt8mm/roi/nsdgeneral.nii.gz`` (``-1`` outside the brain, ``0``, ``1`` = in the ROI)
  and ``streams.nii.gz`` (labels ``1..7``, see :data:`STREAMS_LABELS`; ``0`` none, ``-1`` outside the brain).
- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: dataset ``imgBrick``, ``(73000, 425, 425, 3)`` uint8.
- ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``sharedix`` (1-based 73k ids of the shared1000 images),
  ``masterordering`` (1-based, trial -> column of ``subjectim``), ``subjectim`` ``(8, 10000)`` 1-based 73k ids.
- ``nsddata/ppdata/subjSS/behav/responses.tsv``: one row per trial with ``SESSION``, ``RUN``, ``TRIAL`` and
  ``73KID`` (1-based).

Voxel order: a mask is read in NIfTI ``(X, Y, Z)`` order and its selected voxels are taken in C order of
``(X, Y, Z)`` (x slowest, z fastest), i.e. ``np.flatnonzero(mask)``; hdf5 betas are transposed to ``(X, Y, Z)``
before selection, so both betas formats give the same columns. (Takagi & Nishimoto instead apply
``mask.transpose(2, 1, 0)`` to the hdf5 array, i.e. C order of ``(Z, Y, X)``: the same voxels, in another order.)

MindEye2 layout (``pscotti/mindeyev2``): ``betas_all_subj0S_fp32_renorm.hdf5`` key ``betas`` ``(n_rows, n_voxels)``
float32 (nsdgeneral voxels, z-scored per session), ``coco_images_224_float16.hdf5`` key ``images``
``(73000, 3, 224, 224)`` float16 in ``[0, 1]``, and per-trial behaviour (inside MindEye2's webdataset tars as
``behav.npy``; here a ``.npy`` either ``(n, 2)`` = [73k id (0-based), betas row] or MindEye2's ``(n, 1, 17)`` /
``(n, 17)`` with the 73k id in column 0 and the betas row in column 5).

The readers of the large arrays are in :mod:`brain2img.data.nsd.readers`. Large files (betas, stimuli) are
fingerprinted by size, mtime and the sha256 of their first and last MiB, small
files by the sha256 of their bytes (:func:`file_fingerprint`). Every check fails with an error naming the file.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brain2img.io import load_mat, load_nifti_array, reading, sha256_file

N_STIMULI = 73000
STREAMS_LABELS = {"early": 1, "midventral": 2, "midlateral": 3, "midparietal": 4, "ventral": 5, "lateral": 6,
                  "parietal": 7}
ROI_NAMES = ("nsdgeneral", *STREAMS_LABELS)
BEHAVIOUR_COLUMNS = ("SESSION", "RUN", "TRIAL", "73KID")
EXPDESIGN_KEYS = ("sharedix", "masterordering", "subjectim")
READ_CHUNK = 50  # trials (or images) read from a large file at a time
HEAD_TAIL_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------------- paths
def betas_file(root: str | Path, subject: int, session: int, fmt: str = "hdf5") -> Path:
    """NSD betas of one session (``fmt`` ``"hdf5"`` or ``"nifti"``) under the NSD root."""
    name = f"betas_session{session:02d}.hdf5" if fmt == "hdf5" else f"betas_session{session:02d}.nii.gz"
    return (Path(root) / "nsddata_betas" / "ppdata" / f"subj{subject:02d}" / "func1pt8mm"
            / "betas_fithrf_GLMdenoise_RR" / name)


def roi_file(root: str | Path, subject: int, name: str) -> Path:
    """ROI volume ``nsdgeneral`` or ``streams`` (func1pt8mm) of one subject."""
    return Path(root) / "nsddata" / "ppdata" / f"subj{subject:02d}" / "func1pt8mm" / "roi" / f"{name}.nii.gz"


def stimuli_file(root: str | Path) -> Path:
    """The ``imgBrick`` hdf5 of the 73k stimuli."""
    return Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "nsd_stimuli.hdf5"


def expdesign_file(root: str | Path) -> Path:
    """``nsd_expdesign.mat``."""
    return Path(root) / "nsddata" / "experiments" / "nsd" / "nsd_expdesign.mat"


def responses_file(root: str | Path, subject: int) -> Path:
    """The behaviour table ``responses.tsv`` of one subject."""
    return Path(root) / "nsddata" / "ppdata" / f"subj{subject:02d}" / "behav" / "responses.tsv"


# --------------------------------------------------------------------------------------------------- fingerprints
def file_fingerprint(path: str | Path, large: bool) -> str:
    """Identify a source file: sha256 of its bytes (``large=False``) or, for multi-GB files, ``"size:mtime_ns:"`` plus
    the sha256 of its first and last MiB (``large=True``; a change in the middle that keeps size and mtime is
    missed: delete the prepared folder after editing a file in place)."""
    path = Path(path)
    if not large:
        return sha256_file(path)
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEAD_TAIL_BYTES))
        if stat.st_size > HEAD_TAIL_BYTES:
            handle.seek(max(HEAD_TAIL_BYTES, stat.st_size - HEAD_TAIL_BYTES))
            digest.update(handle.read())
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest.hexdigest()}"


# --------------------------------------------------------------------------------------------------- ROI masks
def read_roi_volume(path: str | Path, allowed: tuple[int, int]) -> np.ndarray:
    """Read an integer-valued ROI volume ``(X, Y, Z)`` (NIfTI order) and check its values.

    Args:
        path: the ``.nii.gz``.
        allowed: inclusive range of valid values (``(-1, 1)`` for nsdgeneral, ``(-1, 7)`` for streams).

    Returns:
        int64 ``(X, Y, Z)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NSD ROI file not found: '{path}'")
    data = load_nifti_array(path, "NSD ROI volume")
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"ROI file '{path}' has shape {data.shape}, expected a 3-D volume (X, Y, Z)")
    values = data.astype(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < allowed[0]) | (values > allowed[1])
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"ROI file '{path}' holds {int(bad.sum())} value(s) that are not integers in "
                         f"[{allowed[0]}, {allowed[1]}] (first: {values[where]} at (x, y, z) = {where})")
    return values.astype(np.int64)


def roi_mask(names: list[str], nsdgeneral_path: str | Path, streams_path: str | Path) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` union of the named ROIs.

    Args:
        names: ``"nsdgeneral"`` (voxels where the volume ``== 1``) and/or streams labels (:data:`STREAMS_LABELS`).
        nsdgeneral_path: ``nsdgeneral.nii.gz`` (read only if named).
        streams_path: ``streams.nii.gz`` (read only if a streams label is named).

    Raises:
        ValueError: an unknown ROI name, volumes of different shapes, or no voxel selected.
    """
    unknown = [n for n in names if n not in ROI_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown ROI name(s) {unknown or names}: valid names are {list(ROI_NAMES)}")
    mask: np.ndarray | None = None
    sources = []
    if "nsdgeneral" in names:
        mask = read_roi_volume(nsdgeneral_path, (-1, 1)) == 1
        sources.append(str(nsdgeneral_path))
    streams = [n for n in names if n in STREAMS_LABELS]
    if streams:
        atlas = read_roi_volume(streams_path, (-1, max(STREAMS_LABELS.values())))
        sel = np.isin(atlas, [STREAMS_LABELS[n] for n in streams])
        if mask is not None and mask.shape != sel.shape:
            raise ValueError(f"ROI volumes disagree: '{nsdgeneral_path}' is {mask.shape} but '{streams_path}' is "
                             f"{sel.shape} (both should be the func1pt8mm (X, Y, Z) grid)")
        mask = sel if mask is None else mask | sel
        sources.append(f"{streams_path} (labels {streams})")
    assert mask is not None
    if not mask.any():
        raise ValueError(f"ROI {names} selects no voxel in {sources}: nsdgeneral needs voxels == 1, streams labels "
                         f"{ {n: STREAMS_LABELS[n] for n in streams} }")
    return mask


# --------------------------------------------------------------------------------------------------- design, behaviour
@dataclass
class ExpDesign:
    """``nsd_expdesign.mat``, converted to 0-based indices.

    Attributes:
        shared: int64 sorted 0-based 73k ids of the shared images (``sharedix - 1``).
        masterordering: int64 ``(n_trials,)`` 0-based column of ``subjectim`` per trial.
        subjectim: int64 ``(n_subjects, n_images)`` 0-based 73k ids.
    """

    shared: np.ndarray
    masterordering: np.ndarray
    subjectim: np.ndarray


def read_expdesign(path: str | Path) -> ExpDesign:
    """Read and check ``nsd_expdesign.mat`` (1-based MATLAB indices become 0-based)."""
    path = Path(path)
    mat = load_mat(path, "NSD experiment design")  # a missing file: FileNotFoundError naming it
    missing = [k for k in EXPDESIGN_KEYS if k not in mat]
    if missing:
        raise ValueError(f"experiment design '{path}' lacks the variable(s) {missing}; expected {EXPDESIGN_KEYS}")
    out = {}
    for key in EXPDESIGN_KEYS:
        arr = np.asarray(mat[key], dtype=np.float64)
        if key != "subjectim":
            arr = arr.reshape(-1)
        elif arr.ndim != 2:
            raise ValueError(f"experiment design '{path}': 'subjectim' has shape {arr.shape}, expected "
                             f"(n_subjects, n_images) = (8, 10000)")
        if arr.size == 0 or not np.isfinite(arr).all() or (arr != np.round(arr)).any() or arr.min() < 1:
            raise ValueError(f"experiment design '{path}': '{key}' must hold 1-based integer indices (>= 1)")
        out[key] = arr.astype(np.int64) - 1
    if out["sharedix"].max() >= N_STIMULI:
        raise ValueError(f"experiment design '{path}': 'sharedix' holds ids above {N_STIMULI} (1-based)")
    if out["masterordering"].max() >= out["subjectim"].shape[1]:
        raise ValueError(f"experiment design '{path}': 'masterordering' holds {out['masterordering'].max() + 1}, but "
                         f"'subjectim' has {out['subjectim'].shape[1]} columns")
    return ExpDesign(shared=np.unique(out["sharedix"]), masterordering=out["masterordering"],
                     subjectim=out["subjectim"])


def _int_cell(value: str, path: Path, line: int, column: str) -> int:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number) or number != round(number):
        raise ValueError(f"behaviour file '{path}' line {line}: column '{column}' = {value!r} is not an integer")
    return int(number)


def read_responses(path: str | Path, subject: int, sessions: list[int], trials_per_session: int
                   ) -> dict[int, np.ndarray]:
    """The 0-based 73k id of every beta row of the chosen sessions, from ``responses.tsv``.

    Trusted source: the k-th row of session ``s`` in ``responses.tsv`` (rows are in presentation order) is row
    ``k`` of that session's betas. This is checked: within a session ``(RUN, TRIAL)`` must increase row by row, and
    every chosen session must have exactly ``trials_per_session`` rows.

    Args:
        path: ``responses.tsv``.
        subject: checked against a ``SUBJECT`` column if there is one.
        sessions: the sessions to read (1-based).
        trials_per_session: beta rows per session (750 in NSD).

    Returns:
        session -> int64 ``(trials_per_session,)`` 0-based 73k ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NSD behaviour file not found: '{path}'")
    wanted = set(sessions)
    rows: dict[int, list[tuple[int, int, int, int]]] = {s: [] for s in sessions}
    with reading(path, "tab-separated text", "NSD behaviour (responses.tsv)"), open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        header = reader.fieldnames or []
        records = list(reader)
    missing = [c for c in BEHAVIOUR_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"behaviour file '{path}' lacks the column(s) {missing} (tab-separated, header "
                         f"{header}); expected {BEHAVIOUR_COLUMNS}")
    for line, row in enumerate(records, start=2):
        session = _int_cell(row["SESSION"], path, line, "SESSION")
        if session not in wanted:
            continue
        if "SUBJECT" in row and _int_cell(row["SUBJECT"], path, line, "SUBJECT") != subject:
            raise ValueError(f"behaviour file '{path}' line {line}: SUBJECT = {row['SUBJECT']}, expected "
                             f"{subject}")
        rows[session].append((line, *(_int_cell(row[c], path, line, c) for c in BEHAVIOUR_COLUMNS[1:])))
    out = {}
    for s in sessions:
        table = np.asarray(rows[s], dtype=np.int64).reshape(-1, 4)
        if len(table) < trials_per_session:
            raise ValueError(f"behaviour file '{path}': session {s} has {len(table)} rows, so beta row "
                             f"{len(table)} (0-based) of session {s} has no behaviour row; expected "
                             f"{trials_per_session} rows per session")
        if len(table) > trials_per_session:
            raise ValueError(f"behaviour file '{path}': session {s} has {len(table)} rows, more than the "
                             f"{trials_per_session} beta rows of a session (trials_per_session)")
        order = table[:, 1] * 1_000_000 + table[:, 2]
        if (np.diff(order) <= 0).any():
            k = int(np.flatnonzero(np.diff(order) <= 0)[0]) + 1
            raise ValueError(f"behaviour file '{path}' line {table[k, 0]}: session {s} rows are not in presentation "
                             f"order ((RUN, TRIAL) = ({table[k, 1]}, {table[k, 2]}) after ({table[k - 1, 1]}, "
                             f"{table[k - 1, 2]})); the k-th row of a session must be its k-th beta row")
        ids = table[:, 3] - 1
        bad = np.flatnonzero((ids < 0) | (ids >= N_STIMULI))
        if len(bad):
            raise ValueError(f"behaviour file '{path}' line {table[bad[0], 0]}: 73KID = {table[bad[0], 3]} is not a "
                             f"1-based id in [1, {N_STIMULI}]: no image has that id")
        out[s] = ids
    return out


def check_against_design(ids: dict[int, np.ndarray], design: ExpDesign, subject: int, trials_per_session: int,
                         responses_path: str | Path, design_path: str | Path) -> None:
    """Check the 73k ids from ``responses.tsv`` against ``subjectim[subject, masterordering[trial]]``."""
    if subject > design.subjectim.shape[0]:
        raise ValueError(f"experiment design '{design_path}': 'subjectim' has {design.subjectim.shape[0]} rows, no "
                         f"row for subject {subject}")
    for s, session_ids in ids.items():
        trials = (s - 1) * trials_per_session + np.arange(trials_per_session)
        if trials[-1] >= len(design.masterordering):
            raise ValueError(f"experiment design '{design_path}': 'masterordering' has {len(design.masterordering)} "
                             f"trials, fewer than session {s} needs ({trials[-1] + 1})")
        expected = design.subjectim[subject - 1, design.masterordering[trials]]
        differ = np.flatnonzero(expected != session_ids)
        if len(differ):
            k = int(differ[0])
            raise ValueError(f"behaviour file '{responses_path}' says session {s} trial {k} (0-based) showed 73k id "
                             f"{session_ids[k] + 1} (1-based) but '{design_path}' subjectim[{subject - 1}, "
                             f"masterordering[{trials[k]}]] gives {expected[k] + 1} ({len(differ)} trial(s) differ)")
