"""Small files in the layout the Natural Scenes Dataset ships, for subject 1 (two sessions of 12 trials).

The tree (betas hdf5 / NIfTI, ROI volumes, ``nsd_stimuli.hdf5``, ``nsd_expdesign.mat``, ``responses.tsv``) and the
caption files (``nsd_stim_info_merged.csv``, COCO ``captions_*.json``) are written where
:mod:`brain2img.data.nsd.files` and :mod:`brain2img.data.nsd.captions` look for them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import scipy.io

from brain2img.data.nsd import files as nsd_files
from brain2img.data.nsd.captions import annotations_dir, stim_info_file

X, Y, Z = 6, 5, 4
TPS = 12  # trials per session (750 in NSD)
N_IMG = 30  # images in the tiny imgBrick
MASK_XYZ = [(0, 1, 2), (1, 0, 3), (1, 4, 0), (2, 2, 2), (3, 1, 1), (4, 1, 2), (5, 3, 0)]  # lexicographic order
KNOWN_XYZ, KNOWN_COL = (4, 1, 2), 5
SUBJECTIM0 = [3, 7, 11, 0, 2, 5, 6, 9, 12, 14, 15, 17, 18, 20, 21, 23, 25, 26, 28, 29]  # 0-based 73k ids, subject 1
SHARED = [3, 7, 11, 27]  # 0-based; 27 is never shown to subject 1
ORDER = [0, 3, 4, 1, 5, 6, 2, 7, 8, 0, 9, 10, 1, 11, 12, 2, 13, 0, 14, 15, 1, 3, 2, 17]  # trial -> subjectim column


def trial_ids(subjectim0=SUBJECTIM0) -> np.ndarray:
    """0-based 73k id of every trial (sessions 1, 2)."""
    return np.asarray(subjectim0)[ORDER]


def session_betas(session: int, dtype=np.int16) -> np.ndarray:
    """Raw betas of one session in (trial, X, Y, Z) order, with a per-voxel offset per session."""
    rng = np.random.default_rng(session)
    offset = rng.integers(-2000, 2000, size=(1, X, Y, Z))
    return (rng.integers(-1500, 1500, size=(TPS, X, Y, Z)) + offset).astype(dtype)


def mask_volume() -> np.ndarray:
    vol = np.zeros((X, Y, Z), dtype=np.int16)
    vol[:, :, 3] = -1
    vol[0, 0, :] = -1
    for xyz in MASK_XYZ:
        vol[xyz] = 1
    return vol


def streams_volume() -> np.ndarray:
    return np.random.default_rng(7).integers(-1, 8, size=(X, Y, Z)).astype(np.int16)


def save_nifti(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def write_stimuli(folder: Path) -> tuple[Path, np.ndarray]:
    """A real-size imgBrick ``(30, 425, 425, 3)`` uint8 in ``folder/nsd_stimuli.hdf5``: image k is a 17x17 random
    pattern blown up 25x. Returns the path and the images (the ``nsd_stimuli`` fixture shares one per module)."""
    path = Path(folder) / "nsd_stimuli.hdf5"
    bricks = np.stack([np.kron(np.random.default_rng(100 + k).integers(0, 256, (17, 17, 3)), np.ones((25, 25, 1)))
                       for k in range(N_IMG)]).astype(np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=bricks)
    return path, bricks


def build(root, stimuli, betas=None, fmt="hdf5", nsdgeneral=None, subjectim0=SUBJECTIM0, responses=None):
    """Write the NSD tree for subject 1 under root; returns the raw betas per session in (trial, X, Y, Z)."""
    betas = {s: session_betas(s) for s in (1, 2)} if betas is None else betas
    for s, arr in betas.items():
        path = nsd_files.betas_file(root, 1, s, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "hdf5":
            with h5py.File(path, "w") as f:
                f.create_dataset("betas", data=arr.transpose(0, 3, 2, 1))  # (trials, Z, Y, X)
        else:
            save_nifti(path, np.ascontiguousarray(arr.transpose(1, 2, 3, 0)))  # (X, Y, Z, trials)
    save_nifti(nsd_files.roi_file(root, 1, "nsdgeneral"), mask_volume() if nsdgeneral is None else nsdgeneral)
    save_nifti(nsd_files.roi_file(root, 1, "streams"), streams_volume())
    stim = nsd_files.stimuli_file(root)
    stim.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(stimuli[0], stim)
    subjectim = np.random.default_rng(3).integers(0, 73000, size=(8, len(subjectim0)))
    subjectim[0] = subjectim0
    design = nsd_files.expdesign_file(root)
    design.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(design, {"sharedix": np.asarray([SHARED]) + 1, "masterordering": np.asarray([ORDER]) + 1,
                              "subjectim": subjectim + 1})
    if responses is None:
        responses = [(1, g // TPS + 1, g % TPS // 6 + 1, g % 6 + 1, int(subjectim0[ORDER[g]]) + 1, ORDER[g] + 1)
                     for g in range(2 * TPS)]
    lines = ["SUBJECT\tSESSION\tRUN\tTRIAL\t73KID\t10KID"] + ["\t".join(str(v) for v in r) for r in responses]
    path = nsd_files.responses_file(root, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return betas


# --------------------------------------------------------------------------------------------------- captions
N_ROWS = 12


def split(i: int) -> str:
    return "train2017" if i % 3 else "val2017"


def coco_id(i: int) -> int:
    return 500_000 + 7 * i


def write_nsd_captions(root, rows: int = N_ROWS, header=("", "cocoId", "cocoSplit", "nsdId"), skip=()) -> None:
    """nsd_stim_info_merged.csv (row i = 73k id i) and COCO caption files: image i has i % 3 + 1 captions."""
    path = stim_info_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(rows):
            w.writerow([i, coco_id(i), split(i), i][: len(header)])
    folder = annotations_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train2017", "val2017"):
        ann = [{"image_id": coco_id(i), "id": 10 * i + k, "caption": f"image {i} caption {k} "}
               for i in range(rows) if split(i) == name and i not in skip for k in range(i % 3 + 1)]
        (folder / f"captions_{name}.json").write_text(json.dumps({"images": [], "annotations": ann}))
