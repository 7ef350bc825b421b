"""FMRICorpusDataModule: samples against an independent NumPy reading (window averages, per-subject z-score, wrap
padding to the longest subject), the windowing's remainder rules, NIfTI series under a mask, the split by subject,
the prepared folder's reuse and invalidation, and the loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brain2img.data import schema
from brain2img.data.fmri_corpus import datamodule as corpus_module
from brain2img.data.fmri_corpus import files as files_module
from brain2img.data.fmri_corpus.prep import average_windows, window_bounds
from brain2img.data.window_cache import open_window_cache
from tests.builders.fmri_corpus import ROIS, VOXELS, make_dm, nifti_corpus, reference_samples, write_hcp


def wrap(x: np.ndarray, length: int) -> np.ndarray:
    """Wrap padding of the last axis by NumPy's own ``np.pad(mode="wrap")``."""
    return np.pad(x, ((0, 0), (0, length - x.shape[1])), mode="wrap")


def rows_of(dm, subject: int) -> np.ndarray:
    cache = open_window_cache(dm.cache_folder)
    return np.asarray(cache.windows[cache.subjects == subject])


# ----------------------------------------------------------------------------------------------------- values
def test_hcp_samples_match_numpy(tmp_path):
    data = write_hcp(tmp_path / "hcp", n_trs={"100206": 40, "100307": 50, "100408": 40})
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"))
    assert dm.modality == "fmri" and dm.sfreq is None
    assert dm.brain_shape == (19,)  # the longest subject (100307: 6+5+4+4); no padding to whole patches
    assert dm.subject_names == sorted(VOXELS)
    dm.prepare_data()
    cache = open_window_cache(dm.cache_folder)
    assert cache.windows.shape == (4 + 5 + 4, 19) and cache.windows.dtype == np.float32
    for k, name in enumerate(sorted(VOXELS)):
        series = np.concatenate([data[name][roi] for roi in ROIS], axis=1)  # 'VC' = V1..V4 in order
        expected = wrap(reference_samples(series), 19)
        np.testing.assert_allclose(rows_of(dm, k), expected, rtol=1e-5, atol=1e-5)
        # the subject's own columns are z-scored (scalar), the padded ones repeat its first voxels
        own = rows_of(dm, k)[:, : series.shape[1]]
        assert abs(own.mean()) < 1e-5 and abs(own.std() - 1) < 1e-5
    starts = cache.starts[cache.subjects == 1]
    np.testing.assert_array_equal(starts, np.arange(0, 50, 10))
    record = cache.manifest["files"][1]
    assert record["name"] == "100307" and record["n_rows"] == 50 and record["n_samples"] == 5
    assert record["n_voxels"] == 19 and record["first_sample"] == 4


def test_rois_subset_and_order(tmp_path):
    data = write_hcp(tmp_path / "hcp")
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), subjects=["100408", "100206"], rois=["V4", "V1"])
    assert dm.subject_names == ["100408", "100206"] and dm.brain_shape == (11,)
    dm.prepare_data()
    series = np.concatenate([data["100206"]["V4"], data["100206"]["V1"]], axis=1)
    np.testing.assert_allclose(rows_of(dm, 1), reference_samples(series), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rows_of(dm, 0)[:, :7], reference_samples(np.concatenate(
        [data["100408"]["V4"], data["100408"]["V1"]], axis=1)), rtol=1e-5, atol=1e-5)


def test_window_remainder_rules():
    series = np.random.default_rng(0).standard_normal((45, 3))
    spread = window_bounds(45, 10, "spread", "x")
    np.testing.assert_array_equal(np.diff(spread), [12, 11, 11, 11])  # np.array_split's rule, no TR dropped
    np.testing.assert_allclose(average_windows(series, spread),
                               np.stack([p.mean(0) for p in np.array_split(series, 4)]))
    drop = window_bounds(45, 10, "drop", "x")
    np.testing.assert_array_equal(drop, [0, 10, 20, 30, 40])
    np.testing.assert_allclose(average_windows(series, drop), series[:40].reshape(4, 10, 3).mean(axis=1))
    np.testing.assert_array_equal(window_bounds(1200, 10, "spread", "x"), np.arange(0, 1201, 10))  # HCP: 120 of 10


def test_drop_remainder_and_window_trs(tmp_path):
    data = write_hcp(tmp_path / "hcp", voxels={"a": (2, 2, 2, 2)}, n_trs=45)
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), remainder="drop", window_trs=15, val_fraction=0)
    dm.prepare_data()
    series = np.concatenate([data["a"][roi] for roi in ROIS], axis=1)
    windows = series.reshape(3, 15, 8).mean(axis=1)
    np.testing.assert_allclose(rows_of(dm, 0), (windows - windows.mean()) / windows.std(), rtol=1e-5, atol=1e-5)
    assert open_window_cache(dm.cache_folder).manifest["files"][0]["rows_used"] == 45


def test_nifti_series_and_extra_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(files_module, "CHUNK_BYTES", 8 * 24 * 7)  # read the (4, 3, 2, 30) series 7 TRs at a time
    write_hcp(tmp_path / "hcp", voxels={"s1": (1, 1, 1, 1)})
    files, mask_path, series, mask = nifti_corpus(tmp_path)
    extra = np.random.default_rng(3).standard_normal((7, 3)).astype(np.float32) * 4 + 2
    np.save(tmp_path / "god.npy", extra)
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), nifti_files=[str(f) for f in files],
                 nifti_mask=str(mask_path), extra_arrays=[str(tmp_path / "god.npy")])
    n_mask = int(mask.sum())
    assert dm.brain_shape == (n_mask,)
    assert dm.subject_names == ["s1", str(files[0]), str(files[1]), str(tmp_path / "god.npy")]
    dm.prepare_data()
    for k, data in enumerate(series, start=1):
        kept = [(x, y, z) for x in range(4) for y in range(3) for z in range(2) if mask[x, y, z]]  # C order
        voxels = np.stack([data[x, y, z, :] for x, y, z in kept], axis=1)
        np.testing.assert_allclose(rows_of(dm, k), reference_samples(voxels.astype(np.float64)), rtol=1e-5,
                                   atol=1e-5)
    # the extra matrix: its rows are samples (no windowing), z-scored, wrap-padded from 3 voxels to n_mask
    np.testing.assert_allclose(rows_of(dm, 3), wrap((extra - extra.mean()) / extra.std(), n_mask), rtol=1e-5,
                               atol=1e-5)
    manifest = open_window_cache(dm.cache_folder).manifest
    assert manifest["nifti_mask"]["path"] == str(mask_path)
    assert [f["kind"] for f in manifest["files"]] == ["hcp", "nifti", "nifti", "array"]


# ----------------------------------------------------------------------------------------------------- split
def test_split_holds_out_whole_subjects(tmp_path):
    voxels = {f"s{k}": (2, 2, 1, 1) for k in range(5)}
    write_hcp(tmp_path / "hcp", voxels=voxels)
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.4, seed=3)
    dm.setup()
    subjects = open_window_cache(dm.cache_folder).subjects
    train, val = dm.split_indices["train"], dm.split_indices["val"]
    assert len(train) + len(val) == 20 and not set(train) & set(val)
    assert len(set(subjects[val])) == 2 and not set(subjects[train]) & set(subjects[val])
    again = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.4, seed=3)
    np.testing.assert_array_equal(again.split_indices["val"], val)
    picks = {tuple(make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.4, seed=s)
                   .split_indices["val"]) for s in range(6)}
    assert len(picks) > 1  # the seed chooses the subjects
    dm.prepare_data()
    info = json.loads((dm.cache_folder / "manifest.json").read_text())["splits"]["seed=3,val_fraction=0.4"]
    assert info["by"] == "subject" and info["val_subjects"] == [f"s{k}" for k in sorted(set(subjects[val]))]
    assert len(make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0).split_indices["val"]) == 0
    with pytest.raises(ValueError, match="val_fraction=0.95 puts 5 of the 5"):
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.95).setup()


def test_single_subject_split_is_a_contiguous_block(tmp_path):
    write_hcp(tmp_path / "hcp", voxels={"only": (2, 2, 2, 2)}, n_trs=100)
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.3)
    val = dm.split_indices["val"]
    assert len(val) == 3 and np.all(np.diff(val) == 1)
    assert sorted([*dm.split_indices["train"], *val]) == list(range(10))


# ----------------------------------------------------------------------------------------------------- cache
def test_cache_reused_without_reading_and_invalidated(tmp_path, monkeypatch):
    write_hcp(tmp_path / "hcp")
    root = str(tmp_path / "hcp")
    first = make_dm(tmp_path / "c", hcp_root=root)
    first.prepare_data()
    windows = np.array(open_window_cache(first.cache_folder).windows)

    def boom(*args, **kwargs):
        raise AssertionError("a source was read")

    monkeypatch.setattr(corpus_module, "read_source", boom)
    again = make_dm(tmp_path / "c", hcp_root=root)
    again.prepare_data()
    again.setup()
    assert again.cache_folder == first.cache_folder
    np.testing.assert_array_equal(open_window_cache(again.cache_folder).windows, windows)
    # split and loader settings keep the folder; a setting of the samples needs a new one (so sources are read)
    assert make_dm(tmp_path / "c", hcp_root=root, seed=4, val_fraction=0.5, batch_size=2).cache_folder == \
        first.cache_folder
    for changed in ({"window_trs": 5}, {"remainder": "drop"}, {"rois": ["V1", "V2"]}, {"subjects": ["100206"]}):
        dm = make_dm(tmp_path / "c", hcp_root=root, **changed)
        assert dm.cache_folder != first.cache_folder, changed
    with pytest.raises(AssertionError, match="a source was read"):
        make_dm(tmp_path / "c", hcp_root=root, window_trs=5).prepare_data()
    monkeypatch.undo()
    write_hcp(tmp_path / "hcp", seed=9)  # same shapes, new values
    assert make_dm(tmp_path / "c", hcp_root=root).cache_folder != first.cache_folder


def test_corrupted_cache_is_detected(tmp_path):
    write_hcp(tmp_path / "hcp")
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"))
    dm.prepare_data()
    arr = np.load(dm.cache_folder / "windows.npy", mmap_mode="r+")
    arr[0, 0] += 1.0
    arr.flush()
    del arr
    with pytest.raises(ValueError, match="checksum mismatch.*windows.npy"):
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp")).prepare_data()


def test_failed_build_leaves_no_folder(tmp_path):
    data = write_hcp(tmp_path / "hcp")
    data["100408"]["V3"][7, 2] = np.nan  # the last subject: the others are written first
    np.savez(tmp_path / "hcp" / "100408" / "HCP_visual_voxel.npz", **data["100408"])
    with pytest.raises(ValueError, match=r"100408/HCP_visual_voxel\.npz', array 'V3'.*TR 7, voxel 2"):
        make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp")).prepare_data()
    assert list((tmp_path / "c").iterdir()) == []


# ----------------------------------------------------------------------------------------------------- loaders
def test_loaders_serve_the_cached_rows(tmp_path):
    write_hcp(tmp_path / "hcp")
    dm = make_dm(tmp_path / "c", hcp_root=str(tmp_path / "hcp"), val_fraction=0.34, num_workers=0)
    dm.setup()
    cache = open_window_cache(dm.cache_folder)
    for split in ("train", "val"):
        ds = dm.dataset(split)
        for i in range(len(ds)):
            item, row = ds[i], int(dm.split_indices[split][i])
            assert item[schema.INDEX] == i and item[schema.SUBJECT] == int(cache.subjects[row])
            np.testing.assert_array_equal(item[schema.BRAIN].numpy(), cache.windows[row])
    batch = next(iter(dm.train_dataloader()))
    assert batch[schema.BRAIN].shape == (4, 19) and batch[schema.BRAIN].dtype == torch.float32
    assert batch[schema.SUBJECT].dtype == torch.int64 and batch[schema.INDEX].dtype == torch.int64
    assert sum(len(b[schema.BRAIN]) for b in dm.val_dataloader()) == len(dm.split_indices["val"]) == 4
