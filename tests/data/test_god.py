"""GODDataModule on small files in the MinD-Vis / DC-MAE npz layout, checked against an independent NumPy / PIL reading
of the same files (bad inputs: test_god_errors.py; the BData layout: test_god_bdata.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from brain2img.data import schema
from brain2img.data.god import GODDataModule
from tests.builders.god import (
    LABELS,
    REPEATS,
    ROIS,
    TRAIN_SYNSETS,
    VC_VOXELS,
    build_npz,
    heldout_pairs,
    int_id,
    stimulus_images,
    train_pairs,
    write_labels,
)

TRAIN_IDS = np.asarray([int_id(p) for p in train_pairs()])
TEST_IDS = np.asarray([int_id(p) for p in heldout_pairs()])


def module(tmp_path, **kw) -> GODDataModule:
    kw = {"root": str(tmp_path / "god"), "image_size": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return GODDataModule(**kw)


def numpy_reading(root, subject=3, roi="VC") -> dict[str, np.ndarray]:
    """The ROI columns of the subject file, read with NumPy alone."""
    with np.load(root / f"sbj_{subject}.npz") as npz:
        mask = npz[roi]
        return {k: npz[k][:, mask].astype(np.float64) for k in ("arr_0", "arr_1", "arr_2")} | {
            "arr_3": npz["arr_3"], "arr_4": npz["arr_4"]}


def split_ids(dm) -> dict[str, set[int]]:
    d = dm._data
    return {name: set(d.stimulus_ids[d.splits[name]].tolist()) for name in ("train", "val", "test")}


def by_hand_zscore(x: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean, std = x[train_rows].mean(), x[train_rows].std()
    return (x - mean) / std, mean, std


# ------------------------------------------------------------------------------------------------ behaviour
def test_batch_schema_shapes_and_labels(tmp_path):
    build_npz(tmp_path / "god")
    dm = module(tmp_path)
    assert (dm.modality, dm.brain_shape, dm.image_size, dm.sfreq) == ("fmri", (VC_VOXELS[3],), 32, None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(schema.SAMPLE_KEYS)
    assert batch["brain"].shape == (4, VC_VOXELS[3]) and batch["brain"].dtype == torch.float32
    assert batch["image"].shape == (4, 3, 32, 32) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert (batch["subject"] == 3).all()
    for sid, label in zip(batch["stimulus_id"].tolist(), batch["label"].tolist(), strict=True):
        assert label == LABELS[sid // 10**6]  # the first class of imagenet_class_index.json listing the synset
    sizes = {s: len(dm.dataset(s)) for s in ("train", "val", "test")}
    assert sizes["train"] + sizes["val"] == len(TRAIN_IDS) and sizes["test"] == len(TEST_IDS)  # arr_2: one per image


def test_values_match_numpy_zscore_with_training_statistics(tmp_path):
    build_npz(tmp_path / "god")
    dm = module(tmp_path)
    dm.setup()
    d, ref = dm._data, numpy_reading(tmp_path / "god")
    n_train = len(ref["arr_0"])
    rows = dm.trial_rows
    np.testing.assert_array_equal(rows[:n_train], np.arange(n_train))
    ids = d.stimulus_ids[d.trial_stimulus]
    np.testing.assert_array_equal(ids[:n_train], TRAIN_IDS[ref["arr_3"]])  # arr_3: train_images index per row
    np.testing.assert_array_equal(ids[n_train:], TEST_IDS)  # arr_2: one row per test image, in order
    in_train = np.isin(ids[:n_train], list(split_ids(dm)["train"]))
    assert 0 < in_train.sum() < n_train  # validation rows are left out of the statistics
    matrix = np.concatenate([ref["arr_0"], ref["arr_2"]])
    expected, mean, std = by_hand_zscore(matrix, np.r_[in_train, np.zeros(len(TEST_IDS), bool)])
    np.testing.assert_allclose(np.asarray(d.brain), expected, rtol=1e-5, atol=1e-5)
    z = json.loads(dm.manifest_path.read_text())["zscore"]
    assert z["mean"] == pytest.approx(mean) and z["std"] == pytest.approx(std)
    train_images, test_images = stimulus_images(32)
    for k, sid in enumerate(TEST_IDS):
        np.testing.assert_array_equal(d.images[np.searchsorted(d.stimulus_ids, sid)], test_images[k])
    for k, sid in enumerate(TRAIN_IDS):
        np.testing.assert_array_equal(d.images[np.searchsorted(d.stimulus_ids, sid)], train_images[k])


def test_eval_repeats_single_serves_arr1_with_its_arr4_images(tmp_path):
    build_npz(tmp_path / "god")
    avg, single = module(tmp_path), module(tmp_path, eval_repeats="single")
    avg.setup()
    single.setup()
    assert single.data_folder != avg.data_folder
    ref = numpy_reading(tmp_path / "god")
    test = single.dataset("test", "single")
    assert len(test) == len(TEST_IDS) * REPEATS
    n_train = len(ref["arr_0"])
    np.testing.assert_array_equal(single.trial_rows[n_train:], np.arange(len(TEST_IDS) * REPEATS))
    assert [test[i]["stimulus_id"] for i in range(len(test))] == TEST_IDS[ref["arr_4"]].tolist()
    mean, std = (json.loads(single.manifest_path.read_text())["zscore"][k] for k in ("mean", "std"))
    np.testing.assert_allclose(test.brain.numpy(), (ref["arr_1"] - mean) / std, rtol=1e-5, atol=1e-5)
    # the base's per-image mean of the arr_1 trials is the z-scored arr_2 row the averaged layout serves
    averaged = single.dataset("test", "average")
    np.testing.assert_allclose(averaged.brain.numpy(), avg.dataset("test", "average").brain.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(single._data.brain[:n_train]), np.asarray(avg._data.brain[:n_train]))


def test_split_by_image_disjoint_stratified_and_seeded(tmp_path):
    build_npz(tmp_path / "god")
    dm = module(tmp_path, val_fraction=0.25)
    dm.setup()
    ids = split_ids(dm)
    assert ids["test"] == set(TEST_IDS.tolist())
    assert not (ids["train"] & ids["val"]) and not (ids["val"] & ids["test"]) and not (ids["train"] & ids["test"])
    assert ids["train"] | ids["val"] == set(TRAIN_IDS.tolist())
    assert len(ids["val"]) == round(0.25 * len(TRAIN_IDS))
    per_category = [sum(i // 10**6 == s for i in ids["val"]) for s in TRAIN_SYNSETS]
    assert per_category == [2, 2, 2]  # 6 of 3 x 8 images, stratified by synset
    same = module(tmp_path, val_fraction=0.25, cache_dir=str(tmp_path / "other"))
    same.setup()
    assert split_ids(same) == ids
    draws = []
    for seed in (1, 2, 3):
        other = module(tmp_path, val_fraction=0.25, seed=seed)
        other.setup()
        assert split_ids(other)["test"] == ids["test"]
        draws.append(split_ids(other)["val"])
    assert any(v != ids["val"] for v in draws)
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["counts"]["per_split_stimuli"] == {"train": 18, "val": 6, "test": 4}
    assert manifest["splits"]["test"]["repeats"] == [1] * 4  # arr_2: the averaged row of each test image


def test_cache_reuse_and_invalidation(tmp_path):
    build_npz(tmp_path / "god")
    dm = module(tmp_path)
    dm.prepare_data()
    brain_file = dm.data_folder / "brain.npy"
    stamp = brain_file.stat().st_mtime_ns
    again = module(tmp_path)
    again.prepare_data()
    again.setup()
    assert again.data_folder == dm.data_folder and brain_file.stat().st_mtime_ns == stamp
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1
    stim = np.load(dm.data_folder / "stimulus_ids.npy")
    np.save(dm.data_folder / "stimulus_ids.npy", stim[::-1])
    with pytest.raises(ValueError, match="checksum mismatch for cached file .*stimulus_ids.npy"):
        module(tmp_path).setup()
    assert module(tmp_path, image_size=24).data_folder != dm.data_folder
    assert module(tmp_path, roi="LVC").data_folder != dm.data_folder
    assert module(tmp_path, val_fraction=0.2).data_folder != dm.data_folder
    pairs = train_pairs()
    write_labels(tmp_path / "god", train=[*pairs[:-1], (pairs[-1][0], pairs[-1][1] + 1)])  # a changed source file
    assert module(tmp_path).data_folder != dm.data_folder


def test_voxel_counts_and_roi_columns_per_subject(tmp_path):
    build_npz(tmp_path / "god", subjects=(1, 2, 3, 4, 5))
    for subject, n_vc in VC_VOXELS.items():
        dm = module(tmp_path, subject=subject)
        assert dm.brain_shape == (n_vc,)
        columns = dm.roi_columns
        assert set(columns) == set(ROIS)
        with np.load(tmp_path / "god" / f"sbj_{subject}.npz") as npz:
            vc = npz["VC"]
            for name in ROIS:
                assert columns[name] == np.flatnonzero(npz[name][vc]).tolist(), (subject, name)
        assert sorted(columns["LVC"]) == sorted(columns["V1"] + columns["V2"] + columns["V3"])
    dm = module(tmp_path, subject=1)
    dm.setup()
    assert dm._data.brain.shape[1] == VC_VOXELS[1]
    assert json.loads(dm.manifest_path.read_text())["roi_columns"]["HVC"] == dm.roi_columns["HVC"]


def test_another_roi_serves_its_columns_and_the_rois_inside_it(tmp_path):
    build_npz(tmp_path / "god")
    dm = module(tmp_path, roi="LVC")
    with np.load(tmp_path / "god" / "sbj_3.npz") as npz:
        lvc = npz["LVC"]
        assert dm.brain_shape == (int(lvc.sum()),)
        assert set(dm.roi_columns) == {"LVC", "V1", "V2", "V3"}  # V4, HVC, VC have voxels outside LVC
        assert dm.roi_columns["V2"] == np.flatnonzero(npz["V2"][lvc]).tolist()
        train = npz["arr_0"][:, lvc]
    dm.setup()
    n = len(train)
    rows = np.isin(dm._data.stimulus_ids[dm._data.trial_stimulus[:n]], list(split_ids(dm)["train"]))
    np.testing.assert_allclose(np.asarray(dm._data.brain[:n]), by_hand_zscore(train, rows)[0], atol=1e-5)


def test_images_are_pil_bicubic_resizes(tmp_path):
    build_npz(tmp_path / "god", side=32)
    dm = module(tmp_path, image_size=20)
    dm.setup()
    train_images, _ = stimulus_images(32)
    k = 5
    expected = np.asarray(Image.fromarray(train_images[k]).resize((20, 20), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(dm._data.images[np.searchsorted(dm._data.stimulus_ids, TRAIN_IDS[k])], expected)
    images, ids = dm.stimulus_images("test")
    assert images.shape == (4, 3, 20, 20) and ids.tolist() == sorted(TEST_IDS.tolist())


def test_test_repeats_setting(tmp_path):
    build_npz(tmp_path / "god", repeats=3)
    dm = module(tmp_path, test_repeats=3, eval_repeats="single")
    dm.setup()
    assert len(dm.dataset("test")) == 4 * 3
    with pytest.raises(ValueError, match=r"'arr_1' has 12 rows, expected 'arr_2' rows x test_repeats = 4 x 35"):
        module(tmp_path).prepare_data()
