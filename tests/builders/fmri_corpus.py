"""Small fMRI corpus files in the real layouts: HCP subjects (``<root>/<subject>/HCP_visual_voxel.npz`` with float
arrays ``V1``..``V4`` of shape ``(TRs, voxels)``, as DC-MAE's ``data/HCP/preprocess_hcp.py`` writes them), 4-D NIfTI
series and 3-D masks written with nibabel, and extra ``.npy`` matrices; plus the independent NumPy reference of a
subject's samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brain2img.data.fmri_corpus import FMRICorpusDataModule

ROIS = ("V1", "V2", "V3", "V4")
# voxels per ROI of each subject: 18, 19 and 15 voxels in all, so the corpus is padded to 19
VOXELS = {"100206": (5, 4, 3, 6), "100307": (6, 5, 4, 4), "100408": (4, 4, 4, 3)}
N_TRS = 40


def write_hcp(root: Path, voxels: dict[str, tuple[int, ...]] | None = None, n_trs: int | dict[str, int] = N_TRS,
              seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write HCP subject files; returns subject -> ROI -> array (float64, a different offset and scale each)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, (subject, counts) in enumerate((voxels or VOXELS).items()):
        trs = n_trs[subject] if isinstance(n_trs, dict) else n_trs
        arrays = {roi: 0.5 * k + (1.0 + k) * rng.standard_normal((trs, n)) for roi, n in zip(ROIS, counts,
                                                                                               strict=True)}
        write_npz(root / subject / "HCP_visual_voxel.npz", **arrays)
        out[subject] = arrays
    return out


def write_npz(path: Path, **arrays: Any) -> Path:
    """``np.savez`` (uncompressed, as the reference's preprocessing) to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as a NIfTI-1 image (``.nii`` or ``.nii.gz``) with ``affine`` (default: 2 mm voxels)."""
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), path)
    return path


def nifti_corpus(folder: Path, n_files: int = 2, n_trs: int = 30, seed: int = 1
                 ) -> tuple[list[Path], Path, list[np.ndarray], np.ndarray]:
    """4-D series ``(4, 3, 2, n_trs)`` (``.nii.gz`` and ``.nii``) and a mask keeping 13 voxels: (files, mask path,
    series, mask)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((4, 3, 2)) < 0.5
    mask[0, 0, 0] = True
    mask = mask.astype(np.uint8)
    series, files = [], []
    for k in range(n_files):
        data = (3.0 + k + rng.standard_normal((4, 3, 2, n_trs))).astype(np.float32)
        files.append(write_nifti(folder / f"run{k}.nii{'.gz' if k % 2 == 0 else ''}", data))
        series.append(data)
    return files, write_nifti(folder / "mask.nii.gz", mask), series, mask.astype(bool)


def reference_samples(series: np.ndarray, window_trs: int = 10) -> np.ndarray:
    """The reference's steps, independently: ``np.array_split`` into ``T // window_trs`` parts, their means, then
    one scalar z-score (population std) over the subject's matrix."""
    parts = np.array_split(series, len(series) // window_trs, axis=0)
    windows = np.stack([p.mean(axis=0) for p in parts])
    return (windows - windows.mean()) / windows.std()


def make_dm(cache: Path, **kw: Any) -> FMRICorpusDataModule:
    return FMRICorpusDataModule(cache_dir=str(cache), **{"progress": False, "batch_size": 4, **kw})


def fast_dev_run_args(tmp: Path) -> dict[str, Any]:
    """The ``data.init_args`` of the fast_dev_run case: three HCP subjects of 80 TRs (8 samples each) and 40 to 58
    voxels (a few patches of 16 for the masked autoencoder)."""
    write_hcp(tmp / "hcp", voxels={"s1": (12, 10, 10, 8), "s2": (16, 14, 16, 12), "s3": (10, 10, 12, 12)}, n_trs=80)
    return {"hcp_root": str(tmp / "hcp"), "batch_size": 8, "val_fraction": 0.3, "progress": False,
            "cache_dir": str(tmp / "cache")}
