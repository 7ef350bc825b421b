"""FMRICorpusDataModule with GOD subject files (``god_files``, DC-MAE's ``include_kam=True``): the training fMRI
``arr_0`` in the ROI's columns against an independent NumPy reading (scalar z-score per subject, wrap padding to the
longest subject), with HCP subjects, the test fMRI never read, the prepared folder's invalidation, and every bad
file an error naming the file and the field."""

from __future__ import annotations

import re

import numpy as np
import pytest

from brain2img.data.fmri_corpus import datamodule as corpus_module
from brain2img.data.god.files import subject_file
from brain2img.data.window_cache import open_window_cache
from brain2img.io import FileFormatError
from tests.builders.fmri_corpus import ROIS, VOXELS, make_dm, reference_samples, write_hcp
from tests.builders.god import VC_VOXELS, build_npz, subject_arrays, write_subject

REPEATS = 2  # test trials per test image: small files (the corpus never reads them anyway)


def wrap(x: np.ndarray, length: int) -> np.ndarray:
    """Wrap padding of the last axis by NumPy's own ``np.pad(mode="wrap")``."""
    return np.pad(x, ((0, 0), (0, length - x.shape[1])), mode="wrap")


def reference(arrays: dict[str, np.ndarray], roi: str = "VC") -> np.ndarray:
    """The corpus samples of a GOD subject, independently: ``arr_0[:, mask]``, one scalar z-score (population std)."""
    x = arrays["arr_0"][:, arrays[roi]]
    return (x - x.mean()) / x.std()


def rows_of(dm, subject: int) -> np.ndarray:
    cache = open_window_cache(dm.cache_folder)
    return np.asarray(cache.windows[cache.subjects == subject])


def god_files(root, subjects=(1, 3)) -> tuple[list[str], dict[int, dict[str, np.ndarray]]]:
    data = build_npz(root, subjects=subjects, repeats=REPEATS)
    return [str(subject_file(root, s)) for s in subjects], data


@pytest.fixture
def npz_reads(monkeypatch) -> list[str]:
    """Every key read from any ``.npz`` archive, in order."""
    keys: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def spy(self, key):
        keys.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", spy)
    return keys


# ----------------------------------------------------------------------------------------------------- values
def test_god_samples_match_numpy(tmp_path, npz_reads):
    files, data = god_files(tmp_path / "god")
    dm = make_dm(tmp_path / "c", god_files=files)
    # known from the masks and arr_0's header: no fMRI is read for the shape
    assert dm.brain_shape == (VC_VOXELS[3],) and dm.subject_names == files
    assert not [k for k in npz_reads if k.startswith("arr_")]
    dm.prepare_data()
    cache = open_window_cache(dm.cache_folder)
    n_rows = len(data[1]["arr_0"])
    assert cache.windows.shape == (2 * n_rows, VC_VOXELS[3]) and cache.windows.dtype == np.float32
    for k, s in enumerate((1, 3)):
        # no windowing: one sample per arr_0 row; sbj_1 (3444 voxels) wrap-padded to sbj_3's 5355
        np.testing.assert_allclose(rows_of(dm, k), wrap(reference(data[s]), VC_VOXELS[3]), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(cache.starts[cache.subjects == k], np.arange(n_rows))
        record = cache.manifest["files"][k]
        assert record["kind"] == "god" and record["path"] == files[k] and record["name"] == files[k]
        assert record["field"] == "arr_0" and record["roi"] == "VC" and record["n_voxels"] == VC_VOXELS[s]
        assert record["n_rows"] == record["rows_used"] == record["n_samples"] == n_rows
        assert record["first_sample"] == k * n_rows and record["fingerprint"] == dm.identity()["files"][k][2]
        x = data[s]["arr_0"][:, data[s]["VC"]]
        assert record["mean"] == pytest.approx(x.mean()) and record["std"] == pytest.approx(x.std())
    assert cache.manifest["config"]["god_roi"] == "VC"


def test_hcp_and_god_together(tmp_path):
    hcp = write_hcp(tmp_path / "hcp", n_trs={"100206": 40, "100307": 50, "100408": 40})
    files, data = god_files(tmp_path / "god", subjects=(1,))
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), god_files=files, val_fraction=0.25, seed=1)
    assert dm.brain_shape == (VC_VOXELS[1],)  # the GOD subject is the longest
    assert dm.subject_names == [*sorted(VOXELS), files[0]]
    dm.setup()
    cache = open_window_cache(dm.cache_folder)
    assert [f["kind"] for f in cache.manifest["files"]] == ["hcp", "hcp", "hcp", "god"]
    assert len(cache.windows) == 4 + 5 + 4 + len(data[1]["arr_0"])
    for k, name in enumerate(sorted(VOXELS)):
        series = np.concatenate([hcp[name][roi] for roi in ROIS], axis=1)
        np.testing.assert_allclose(rows_of(dm, k), wrap(reference_samples(series), VC_VOXELS[1]), rtol=1e-5,
                                   atol=1e-5)
    np.testing.assert_allclose(rows_of(dm, 3), reference(data[1]), rtol=1e-5, atol=1e-5)
    # split by subject: one of the 4 subjects held out whole
    val_subjects = set(cache.subjects[dm.split_indices["val"]])
    assert len(val_subjects) == 1 and not val_subjects & set(cache.subjects[dm.split_indices["train"]])


def test_other_roi(tmp_path):
    files, data = god_files(tmp_path / "god", subjects=(3,))
    dm = make_dm(tmp_path / "c", god_files=files, god_roi="LVC")
    assert dm.brain_shape == (int(data[3]["LVC"].sum()),)
    dm.prepare_data()
    np.testing.assert_allclose(rows_of(dm, 0), reference(data[3], "LVC"), rtol=1e-5, atol=1e-5)
    assert dm.cache_folder != make_dm(tmp_path / "c", god_files=files).cache_folder


def test_test_fmri_never_enters_the_corpus(tmp_path, npz_reads):
    sentinel = 7777.0
    arrays = subject_arrays(2, repeats=REPEATS)
    arrays["arr_1"] = np.full_like(arrays["arr_1"], sentinel)
    arrays["arr_2"] = np.full_like(arrays["arr_2"], np.nan)  # a read would fail the NaN check or show in the cache
    path = write_subject(tmp_path / "god", 2, arrays)
    dm = make_dm(tmp_path / "c", god_files=[str(path)])
    dm.prepare_data()
    assert "arr_1" not in npz_reads and "arr_2" not in npz_reads and "arr_0" in npz_reads
    cache = open_window_cache(dm.cache_folder)
    windows = np.asarray(cache.windows)
    assert len(windows) == len(arrays["arr_0"]) and np.isfinite(windows).all()
    record = cache.manifest["files"][0]
    assert not np.isclose(windows, (sentinel - record["mean"]) / record["std"], rtol=0, atol=1e-3).any()
    assert not np.isclose(windows, sentinel).any()
    np.testing.assert_allclose(windows, reference(arrays), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- cache
def test_cache_reused_and_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    files, data = god_files(tmp_path / "god", subjects=(3,))
    first = make_dm(tmp_path / "c", god_files=files)
    first.prepare_data()

    def boom(*args, **kwargs):
        raise AssertionError("a source was read")

    with monkeypatch.context() as patch:
        patch.setattr(corpus_module, "read_source", boom)
        again = make_dm(tmp_path / "c", god_files=files)
        again.prepare_data()
        assert again.cache_folder == first.cache_folder
    # a corpus without GOD files keeps its folder name (god_roi is not in its config)
    write_hcp(tmp_path / "hcp")
    assert "god_roi" not in make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp")).config()
    # same shapes, new values: a new folder, built from the new file
    changed = {**data[3], "arr_0": data[3]["arr_0"] * 2.0 + 1.0 + np.arange(data[3]["arr_0"].shape[1])}
    write_subject(tmp_path / "god", 3, changed)
    dm = make_dm(tmp_path / "c", god_files=files)
    assert dm.cache_folder != first.cache_folder
    dm.prepare_data()
    np.testing.assert_allclose(rows_of(dm, 0), reference(changed), rtol=1e-5, atol=1e-5)
    assert first.cache_folder.is_dir()  # the old folder is left as it was


# ----------------------------------------------------------------------------------------------------- errors
def god_error(tmp_path, arrays: dict[str, np.ndarray], error=ValueError, **kw) -> str:
    """Prepare a corpus of one good GOD subject and the subject 2 holding ``arrays``; the error message."""
    good, _ = god_files(tmp_path / "god", subjects=(1,))
    bad = write_subject(tmp_path / "god", 2, arrays)
    with pytest.raises(error) as info:
        make_dm(tmp_path / "c", god_files=[*good, str(bad)], **kw).prepare_data()
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
    return str(info.value)


def named(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not in: {message}"


def test_missing_roi_key(tmp_path):
    arrays = subject_arrays(2, repeats=REPEATS)
    del arrays["VC"]
    named(god_error(tmp_path, arrays), "GOD subject file", "sbj_2.npz", "no ROI mask 'VC'", "'LVC'")
    # a god_roi no file has: the first file is named
    named(god_error(tmp_path / "b", subject_arrays(2, repeats=REPEATS), god_roi="V5"), "sbj_1.npz",
          "no ROI mask 'V5'")


def test_bad_roi_mask(tmp_path):
    arrays = subject_arrays(2, repeats=REPEATS)
    arrays["VC"] = arrays["VC"].astype(np.uint8)
    named(god_error(tmp_path, arrays), "sbj_2.npz", "ROI mask 'VC'", "uint8", "boolean")
    arrays["VC"] = np.zeros_like(arrays["LVC"])
    named(god_error(tmp_path / "b", arrays), "sbj_2.npz", "ROI mask 'VC'", "0 voxel(s)")


def test_nan_in_training_fmri(tmp_path):
    arrays = subject_arrays(2, repeats=REPEATS)
    arrays["arr_0"][4, np.flatnonzero(arrays["VC"])[5]] = np.nan
    named(god_error(tmp_path, arrays), "GOD subject file", "sbj_2.npz", "field 'arr_0'", "NaN or Inf",
          "ROI 'VC'", "row 4, ROI column 5")
    # outside the ROI: never read into the corpus, so no error
    arrays = subject_arrays(2, repeats=REPEATS)
    arrays["arr_0"][4, np.flatnonzero(~arrays["VC"])[0]] = np.nan
    path = write_subject(tmp_path / "ok", 2, arrays)
    dm = make_dm(tmp_path / "c2", god_files=[str(path)])
    dm.prepare_data()
    np.testing.assert_allclose(rows_of(dm, 0), reference(arrays), rtol=1e-5, atol=1e-5)


def test_bad_training_field(tmp_path):
    arrays = subject_arrays(2, repeats=REPEATS)
    del arrays["arr_0"]
    named(god_error(tmp_path, arrays), "sbj_2.npz", "lacks the field(s) ['arr_0']", "training fMRI")
    n_cols = len(subject_arrays(2, repeats=REPEATS)["VC"])
    for k, arr_0 in enumerate([np.zeros((24, n_cols - 1)), np.zeros((0, n_cols)), np.zeros(n_cols),
                               np.zeros((24, n_cols), dtype=np.complex64)]):
        message = god_error(tmp_path / f"s{k}", {**subject_arrays(2, repeats=REPEATS), "arr_0": arr_0})
        named(message, "sbj_2.npz", "field 'arr_0'", str(arr_0.shape), f"(rows, {n_cols})")
    flat = {**subject_arrays(2, repeats=REPEATS), "arr_0": np.full((24, n_cols), 3.0)}
    named(god_error(tmp_path / "flat", flat), "sbj_2.npz", "constant (std 0)")


def test_unreadable_or_missing_file(tmp_path):
    good, _ = god_files(tmp_path / "god", subjects=(1,))
    lfs = tmp_path / "god" / "sbj_4.npz"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(FileFormatError, match=re.escape(str(lfs))):
        make_dm(tmp_path / "c", god_files=[*good, str(lfs)]).prepare_data()
    with pytest.raises(FileNotFoundError, match="sbj_5.npz"):
        _ = make_dm(tmp_path / "c", god_files=[str(tmp_path / "god" / "sbj_5.npz")]).brain_shape


def test_bad_settings(tmp_path):
    files, _ = god_files(tmp_path / "god", subjects=(1,))
    with pytest.raises(ValueError, match=r"name a file twice: \[.*sbj_1\.npz'\]"):
        make_dm(tmp_path / "c", god_files=[files[0], files[0]])
    with pytest.raises(ValueError, match="name a file twice"):
        make_dm(tmp_path / "c", god_files=files, extra_arrays=files)
    with pytest.raises(ValueError, match="god_files must be a list"):
        make_dm(tmp_path / "c", god_files=files[0])
    with pytest.raises(ValueError, match="god_roi must be the name"):
        make_dm(tmp_path / "c", god_files=files, god_roi="")
    with pytest.raises(ValueError, match="set hcp_root, nifti_files .* or god_files"):
        make_dm(tmp_path / "c", god_files=[])
    assert make_dm(tmp_path / "c", god_files=files).brain_shape == (VC_VOXELS[1],)  # a corpus of GOD alone
