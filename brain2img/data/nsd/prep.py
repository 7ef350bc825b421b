"""Pure steps of the NSD datamodule: argument checks (sessions, ROIs), ROI columns, session z-scoring, the split.

Kept apart from :mod:`brain2img.data.nsd` (which reads files and serves batches) so each can be tested on arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brain2img.data.nsd import files as nf
from brain2img.data.splits import split_fixed_test

MAX_SESSIONS = 40
VOXEL_ORDER = "C order of the NIfTI (X, Y, Z) grid (x slowest, z fastest): np.flatnonzero(mask)"


def session_list(sessions: list[int] | int) -> list[int]:
    """``n`` -> ``[1, ..., n]``; a list is checked (1-based, unique, at most 40) and sorted."""
    out = list(range(1, int(sessions) + 1)) if isinstance(sessions, int) else sorted(int(s) for s in sessions)
    if not out or out[0] < 1 or out[-1] > MAX_SESSIONS or len(set(out)) != len(out):
        raise ValueError(f"sessions must be a count in 1..{MAX_SESSIONS} or a list of distinct session numbers in "
                         f"1..{MAX_SESSIONS}, got {sessions!r}")
    return out


def roi_list(roi: str | list[str]) -> list[str]:
    """A ROI name or a list of names, checked against :data:`brain2img.data.nsd.files.ROI_NAMES`, sorted."""
    names = [roi] if isinstance(roi, str) else list(roi)
    unknown = [n for n in names if n not in nf.ROI_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown ROI name(s) {unknown or names!r}: valid names are {list(nf.ROI_NAMES)}")
    return sorted(set(names))


def roi_column_map(names: list[str], union: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Columns of each named ROI within the served brain vector.

    The served vector holds the voxels of ``union`` in C order of the ``(X, Y, Z)`` grid (see :data:`VOXEL_ORDER`),
    so column ``j`` is the ``j``-th ``True`` of ``union``; a voxel in several named ROIs is listed under each.

    Args:
        names: ROI names, in the order of the returned dict.
        union: boolean ``(X, Y, Z)`` mask of the served voxels.
        masks: name -> boolean ``(X, Y, Z)`` mask of that ROI (each must lie inside ``union``).

    Raises:
        ValueError: a ROI mask of another shape, or with voxels outside ``union``.
    """
    out = {}
    for name in names:
        mask = masks[name]
        if mask.shape != union.shape:
            raise ValueError(f"ROI '{name}' has shape {mask.shape}, the served voxels' mask {union.shape}")
        if (mask & ~union).any():
            raise ValueError(f"ROI '{name}' has voxels outside the served mask: it must be one of the union's ROIs")
        out[name] = np.flatnonzero(mask[union]).tolist()
    return out


def zscore_session(x: np.ndarray, session: int, source: str, voxel_xyz: np.ndarray | None = None) -> np.ndarray:
    """z-score every column of one session's ``(n_trials, n_voxels)`` betas over its trials (ddof 0).

    Raises:
        ValueError: a voxel is constant over the session (its z-score is undefined; never silently set to 0).
    """
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    flat = np.flatnonzero(std == 0)
    if len(flat):
        j = int(flat[0])
        where = f" (x, y, z) = {tuple(int(v) for v in voxel_xyz[j])}" if voxel_xyz is not None else ""
        raise ValueError(f"betas of session {session} in '{source}': voxel column {j}{where} is constant over the "
                         f"session's {len(x)} trials ({len(flat)} such voxel(s)), so it cannot be z-scored; choose "
                         f"another ROI or zscore='none'")
    return (x - mean) / std


def nsd_splits(stimulus_ids: np.ndarray, shared_ids: np.ndarray, val_fraction: float, seed: int
               ) -> dict[str, np.ndarray]:
    """Stimulus positions of each split: test = shared images, val = a seeded fraction of the others, train = rest.

    Args:
        stimulus_ids: 73k id of each stimulus position.
        shared_ids: 73k ids of the shared1000 images.
        val_fraction: fraction of the non-shared images in val (at least one), ``0 < val_fraction < 1``.
        seed: seed of the val draw.
    """
    return split_fixed_test(np.isin(stimulus_ids, shared_ids), val_fraction, seed, 3,
                            "no shared1000 image ('sharedix' of nsd_expdesign.mat) was shown in the chosen sessions: "
                            "the test split would be empty", "non-shared images")



# --------------------------------------------------------------------------------------------------- datamodule


def select_mindeye2_trials(ids: np.ndarray, rows: np.ndarray, sessions: list[int], trials_per_session: int,
                           n_rows: int, behav_path: Any, betas_path: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trials of ``sessions`` in a MindEye2 behaviour table, ordered by betas row.

    Row ``r`` of the betas file is trial ``r % trials_per_session`` of session ``r // trials_per_session + 1``.

    Returns:
        73k ids, sessions and betas rows of the kept trials.

    Raises:
        ValueError: a chosen session without trials, a row beyond the betas file, or a 73k id with no image (the
            files are named).
    """
    order = np.argsort(rows, kind="stable")
    ids, rows = ids[order], rows[order]
    session = rows // trials_per_session + 1
    keep = np.isin(session, sessions)
    absent = [s for s in sessions if s not in set(session[keep].tolist())]
    if absent:
        raise ValueError(f"behaviour file '{behav_path}' lists no trial of session(s) {absent} "
                         f"(betas rows {(absent[0] - 1) * trials_per_session}.."
                         f"{absent[0] * trials_per_session - 1} for session {absent[0]})")
    if rows[keep].max() >= n_rows:
        raise ValueError(f"behaviour file '{behav_path}' lists betas row {int(rows[keep].max())} but "
                         f"'{betas_path}' has {n_rows} rows")
    bad = ids[keep] >= nf.N_STIMULI
    if bad.any():
        raise ValueError(f"behaviour file '{behav_path}' lists 73k id {int(ids[keep][bad][0])} "
                         f"(0-based): no image has that id (ids are 0..{nf.N_STIMULI - 1})")
    return ids[keep], session[keep], rows[keep]
