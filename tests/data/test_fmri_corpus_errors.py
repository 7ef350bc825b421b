"""FMRICorpusDataModule: every bad input is an error naming the file and the field (never a silent fix), and bad
settings are refused naming the setting."""

from __future__ import annotations

import re

import numpy as np
import pytest

from brain2img.data.fmri_corpus import FMRICorpusDataModule
from brain2img.io import FileFormatError
from tests.builders.fmri_corpus import make_dm, nifti_corpus, write_hcp, write_nifti, write_npz

FILE = "HCP_visual_voxel.npz"


def hcp_error(tmp_path, arrays: dict, **kw) -> str:
    """Prepare a corpus of one good subject and one subject 'bad' holding ``arrays``; the error message."""
    write_hcp(tmp_path / "hcp", voxels={"good": (2, 2, 2, 2)})
    write_npz(tmp_path / "hcp" / "bad" / FILE, **arrays)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), **kw).prepare_data()
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
    return str(info.value)


def rois(n_trs: int = 40, voxels: int = 3, **override: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {roi: rng.standard_normal((n_trs, voxels)) for roi in ("V1", "V2", "V3", "V4")}
    return {**arrays, **override}


def named(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in: {message}"


# ----------------------------------------------------------------------------------------------------- HCP files
def test_missing_roi_key(tmp_path):
    arrays = rois()
    del arrays["V4"]
    message = hcp_error(tmp_path, arrays)
    named(message, f"bad/{FILE}", "['V4']", "lacks")


def test_rois_with_different_tr_counts(tmp_path):
    message = hcp_error(tmp_path, rois(V2=np.zeros((38, 3))))
    named(message, f"bad/{FILE}", "'V1': 40", "'V2': 38", "different numbers of TRs")


def test_fewer_trs_than_one_window(tmp_path):
    message = hcp_error(tmp_path, rois(n_trs=9))
    named(message, f"bad/{FILE}", "9 TRs", "window_trs=10")
    # a longer window makes every subject too short
    named(hcp_error(tmp_path / "b", rois(), window_trs=41), "40 TRs", "window_trs=41")


def test_nan_values(tmp_path):
    v3 = np.random.default_rng(1).standard_normal((40, 3))
    v3[12, 1] = np.inf
    named(hcp_error(tmp_path, rois(V3=v3)), f"bad/{FILE}', array 'V3'", "NaN/Inf", "TR 12, voxel 1")


def test_constant_subject(tmp_path):
    flat = {roi: np.full((40, 3), 2.5) for roi in ("V1", "V2", "V3", "V4")}
    named(hcp_error(tmp_path, flat), "subject 'bad'", f"bad/{FILE}", "constant (std 0)")


def test_roi_arrays_of_the_wrong_kind(tmp_path):
    named(hcp_error(tmp_path, rois(V1=np.zeros(40))), f"bad/{FILE}", "array 'V1'", "(40,)", "(TRs, voxels)")
    named(hcp_error(tmp_path / "b", rois(V2=np.ones((40, 3), dtype=np.int16))), "array 'V2'", "int16",
          "floating point")
    named(hcp_error(tmp_path / "c", rois(V4=np.zeros((40, 0)))), "array 'V4'", "at least one voxel")


def test_not_an_npz(tmp_path):
    write_hcp(tmp_path / "hcp", voxels={"good": (2, 2, 2, 2)})
    (tmp_path / "hcp" / "bad").mkdir()
    (tmp_path / "hcp" / "bad" / FILE).write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(FileFormatError, match=re.escape(f"bad/{FILE}")):
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp")).prepare_data()


def test_hcp_root_without_subjects(tmp_path):
    (tmp_path / "hcp" / "100206").mkdir(parents=True)
    (tmp_path / "hcp" / "100206" / "other.npz").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"))
    named(str(info.value), "hcp_root", str(tmp_path / "hcp"), f"<subject>/{FILE}")
    with pytest.raises(FileNotFoundError, match="hcp_root .* is not a folder"):
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "nowhere"))
    write_hcp(tmp_path / "hcp", voxels={"100307": (1, 1, 1, 1)})
    with pytest.raises(FileNotFoundError) as info:
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), subjects=["100307", "100206"])
    named(str(info.value), "subjects ['100206']", str(tmp_path / "hcp" / "100206" / FILE))


# ----------------------------------------------------------------------------------------------------- NIfTI
def nifti_error(tmp_path, series_file, mask_file) -> str:
    with pytest.raises(ValueError) as info:
        make_dm(tmp_path / "c", nifti_files=[str(series_file)], nifti_mask=str(mask_file)).prepare_data()
    return str(info.value)


def test_nifti_not_4d(tmp_path):
    _, mask, _, _ = nifti_corpus(tmp_path)
    volume = write_nifti(tmp_path / "volume.nii.gz", np.ones((4, 3, 2), dtype=np.float32))
    named(nifti_error(tmp_path, volume, mask), "nifti_files", "volume.nii.gz", "(4, 3, 2)", "4-D")


def test_mask_grid_differs(tmp_path):
    files, _, _, _ = nifti_corpus(tmp_path)
    small = write_nifti(tmp_path / "small_mask.nii.gz", np.ones((4, 3, 3), dtype=np.uint8))
    named(nifti_error(tmp_path, files[0], small), "run0.nii.gz", "small_mask.nii.gz", "grid", "(4, 3, 2)",
          "(4, 3, 3)")
    moved = write_nifti(tmp_path / "moved_mask.nii.gz", np.ones((4, 3, 2), dtype=np.uint8), np.eye(4))
    named(nifti_error(tmp_path, files[0], moved), "run0.nii.gz", "moved_mask.nii.gz", "affine")


def test_bad_masks(tmp_path):
    files, _, _, _ = nifti_corpus(tmp_path)
    empty = write_nifti(tmp_path / "empty.nii.gz", np.zeros((4, 3, 2), dtype=np.uint8))
    named(nifti_error(tmp_path, files[0], empty), "nifti_mask", "empty.nii.gz", "keeps no voxel")
    four = write_nifti(tmp_path / "four.nii.gz", np.ones((4, 3, 2, 2), dtype=np.uint8))
    named(nifti_error(tmp_path, files[0], four), "nifti_mask", "four.nii.gz", "3-D")


def test_nifti_nan_and_constant(tmp_path):
    files, mask_path, series, mask = nifti_corpus(tmp_path, n_files=1)
    data = series[0].copy()
    i, j, k = (int(v[0]) for v in np.nonzero(mask))
    data[i, j, k, 5] = np.nan
    bad = write_nifti(tmp_path / "nan.nii.gz", data)
    named(nifti_error(tmp_path, bad, mask_path), "nan.nii.gz", "nifti_mask", "NaN/Inf", "TR 5, voxel 0")
    flat = write_nifti(tmp_path / "flat.nii", np.full(data.shape, 7, dtype=np.int16))
    named(nifti_error(tmp_path / "b", flat, mask_path), "flat.nii", "constant (std 0)")


def test_truncated_nifti(tmp_path):
    files, mask_path, _, _ = nifti_corpus(tmp_path, n_files=1)
    raw = files[0].read_bytes()
    files[0].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FileFormatError, match=re.escape(str(files[0]))):
        make_dm(tmp_path / "c", nifti_files=[str(files[0])], nifti_mask=str(mask_path)).prepare_data()


# ----------------------------------------------------------------------------------------------------- .npy
@pytest.mark.parametrize(("values", "parts"), [
    (np.zeros(5, dtype=np.float32), ["(5,)", "(samples, voxels)"]),
    (np.zeros((0, 4), dtype=np.float32), ["(0, 4)", "at least one"]),
    (np.ones((5, 4), dtype=np.int32), ["int32", "floating point"]),
    (np.array([[1.0, np.nan], [2.0, 3.0]]), ["NaN/Inf", "sample 0, voxel 1"]),
    (np.full((3, 4), 1.5, dtype=np.float32), ["constant (std 0)"]),
])
def test_bad_extra_arrays(tmp_path, values, parts):
    np.save(tmp_path / "god_sbj3.npy", values)
    with pytest.raises(ValueError) as info:
        make_dm(tmp_path / "c", extra_arrays=[str(tmp_path / "god_sbj3.npy")]).prepare_data()
    named(str(info.value), "god_sbj3.npy", *parts)
    if "constant" not in parts[0]:
        assert "extra_arrays" in str(info.value)


# ----------------------------------------------------------------------------------------------------- settings
def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="corpus is empty"):
        FMRICorpusDataModule(cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="nifti_files and nifti_mask go together"):
        make_dm(tmp_path, nifti_files=["a.nii"])
    with pytest.raises(ValueError, match="nifti_files and nifti_mask go together"):
        make_dm(tmp_path, nifti_mask="m.nii", extra_arrays=["x.npy"])
    with pytest.raises(ValueError, match="set hcp_root too"):
        make_dm(tmp_path, subjects=["100206"], extra_arrays=["x.npy"])
    with pytest.raises(ValueError, match="window_trs must be a positive integer"):
        make_dm(tmp_path, extra_arrays=["x.npy"], window_trs=0)
    with pytest.raises(ValueError, match="remainder must be one of"):
        make_dm(tmp_path, extra_arrays=["x.npy"], remainder="pad")
    with pytest.raises(ValueError, match="rois must be a non-empty list"):
        make_dm(tmp_path, extra_arrays=["x.npy"], rois=["V1", "V1"])
    with pytest.raises(ValueError, match="name a file twice"):
        make_dm(tmp_path, extra_arrays=["x.npy", "x.npy"])
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        _ = make_dm(tmp_path, extra_arrays=[str(tmp_path / "missing.npy")]).brain_shape
