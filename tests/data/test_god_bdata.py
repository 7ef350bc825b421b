"""GODDataModule on BData files written by bdpy itself (the Kamitani lab's layout), checked against bdpy's own
``BData.select`` and against the npz layout of the same samples; bad BData inputs name the file and the field."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest
from PIL import Image

from brain2img.data.god import GODDataModule
from brain2img.data.god import bdata as gb
from tests.builders.god import (
    N_IMAGERY,
    REPEATS,
    VC_VOXELS,
    bdata_samples,
    build_npz,
    heldout_pairs,
    int_id,
    train_pairs,
    write_bdata,
    write_jpegs,
)

bdpy = pytest.importorskip("bdpy")  # bdpy declares Python < 3.12; CI (3.11) runs these

TRAIN_IDS = np.asarray([int_id(p) for p in train_pairs()])
TEST_IDS = np.asarray([int_id(p) for p in heldout_pairs()])


def build(tmp_path, **kw) -> dict:
    samples = bdata_samples(3)
    write_bdata(tmp_path / "bdata" / "Subject3.h5", samples, **kw)
    write_jpegs(tmp_path / "images")
    return samples


def module(tmp_path, **kw) -> GODDataModule:
    kw = {"root": str(tmp_path / "bdata"), "layout": "bdata", "image_root": str(tmp_path / "images"),
          "image_size": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return GODDataModule(**kw)


def bdata_path(tmp_path) -> str:
    return re.escape(str(tmp_path / "bdata" / "Subject3.h5"))


# ------------------------------------------------------------------------------------------------ reading
def test_h5py_reader_matches_bdpy_select(tmp_path):
    build(tmp_path)
    path = tmp_path / "bdata" / "Subject3.h5"
    bd = bdpy.BData(str(path))
    header = gb.read_header(path)
    assert header.keys == list(bd.metadata.key) and header.n_samples == bd.dataset.shape[0]
    for roi in ("VC", "V1", "HVC"):
        expected, index = bd.select(f"ROI_{roi} = 1", return_index=True, verbose=False)
        cols = header.columns(gb.roi_key(roi), roi)
        np.testing.assert_array_equal(cols, index)
        rows = np.arange(header.n_samples)
        data_types = gb.read_data_types(header)
        np.testing.assert_array_equal(gb.read_voxels(header, rows, cols, roi, data_types), expected)
    np.testing.assert_array_equal(gb.read_data_types(header), bd.select("DataType").ravel())
    np.testing.assert_array_equal(gb.read_field(header, "stimulus_id", ""), bd.select("stimulus_id").ravel())
    np.testing.assert_array_equal(header.value[header.keys.index("ROI_V2")], bd.metadata.get("ROI_V2", "value"))


def test_bdata_datamodule_values_images_and_design(tmp_path):
    samples = build(tmp_path)
    dm = module(tmp_path)
    assert dm.brain_shape == (VC_VOXELS[3],) and set(dm.roi_columns) >= {"VC", "LVC", "HVC", "V1"}
    dm.setup()
    d = dm._data
    served = np.flatnonzero(samples["data_type"] <= 2)  # training and test perception; imagery is not served
    np.testing.assert_array_equal(dm.trial_rows, served)
    assert len(d.brain) == len(TRAIN_IDS) + len(TEST_IDS) * REPEATS
    ids = d.stimulus_ids[d.trial_stimulus]
    floats = samples["stimulus"][served]
    np.testing.assert_array_equal(ids // 10**6, np.floor(floats).astype(np.int64))
    np.testing.assert_array_equal(ids % 10**6, np.round((floats - np.floor(floats)) * 1e6).astype(np.int64))
    x = samples["voxels"][served][:, samples["masks"]["VC"]]
    train_split = {int(i) for i in d.stimulus_ids[d.splits["train"]]}
    rows = np.isin(ids, list(train_split))
    np.testing.assert_allclose(np.asarray(d.brain), (x - x[rows].mean()) / x[rows].std(), rtol=1e-5, atol=1e-5)
    assert set(d.stimulus_ids[d.splits["test"]].tolist()) == set(TEST_IDS.tolist())
    assert (d.labels == -1).all()
    test = dm.dataset("test", "average")
    assert len(test) == len(TEST_IDS) and len(dm.dataset("test", "single")) == len(TEST_IDS) * REPEATS
    k = 2  # a test image in test/<synset>/, a training one flat in training/
    for sid, kind in ((TEST_IDS[k], f"test/n{TEST_IDS[k] // 10**6:08d}"), (TRAIN_IDS[k], "training")):
        path = tmp_path / "images" / kind / gb.image_name(sid)
        expected = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(d.images[np.searchsorted(d.stimulus_ids, sid)], expected)
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["counts"]["imagery_samples_not_served"] == N_IMAGERY
    assert manifest["image_names"][str(TEST_IDS[0])] == "n01443537_20000.JPEG"


def test_bdata_and_npz_layouts_serve_the_same_data(tmp_path):
    build(tmp_path)
    build_npz(tmp_path / "npz")  # the same arrays: arr_0, arr_1 (arr_4 gives the images) are the BData samples
    bd = module(tmp_path)
    npz = GODDataModule(root=str(tmp_path / "npz"), image_size=32, eval_repeats="single",
                        cache_dir=str(tmp_path / "cache"))
    assert bd.roi_columns == npz.roi_columns
    bd.setup()
    npz.setup()
    for name in ("stimulus_ids", "trial_stimulus"):
        np.testing.assert_array_equal(getattr(bd._data, name), getattr(npz._data, name))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(bd._data.splits[split], npz._data.splits[split])
    np.testing.assert_allclose(np.asarray(bd._data.brain), np.asarray(npz._data.brain), rtol=1e-6)


def test_label_key_of_the_older_files_and_cache_invalidation(tmp_path):
    build(tmp_path, stimulus_key="Label")
    dm = module(tmp_path)
    dm.setup()
    assert json.loads(dm.manifest_path.read_text())["config"]["stimulus_key"] == "Label"
    first = dm.data_folder
    Image.new("RGB", (40, 40), (9, 9, 9)).save(tmp_path / "images" / "training" / gb.image_name(TRAIN_IDS[3]),
                                               format="JPEG")
    assert module(tmp_path).data_folder != first  # a changed stimulus image gets a new folder
    with pytest.raises(ValueError, match=rf"'{bdata_path(tmp_path)}' has no metadata 'stimulus_id'"):
        module(tmp_path, stimulus_key="stimulus_id").prepare_data()


# ------------------------------------------------------------------------------------------------ bad input
def test_missing_roi_or_data_type_metadata(tmp_path):
    build(tmp_path, skip=("ROI_VC",))
    with pytest.raises(ValueError, match=rf"'{bdata_path(tmp_path)}' has no metadata 'ROI_VC' \(voxels of ROI 'VC'\); "
                                         r"its ROI metadata keys: \['ROI_V1'"):
        module(tmp_path)
    build(tmp_path, skip=("DataType",))
    with pytest.raises(ValueError, match=rf"'{bdata_path(tmp_path)}' has no metadata 'DataType'"):
        module(tmp_path).prepare_data()
    build(tmp_path, skip=("stimulus_id",))
    with pytest.raises(ValueError, match=r"has no stimulus id metadata: none of \('stimulus_id', 'Label'\)"):
        module(tmp_path)


def test_missing_stimulus_image_is_named(tmp_path):
    build(tmp_path)
    sid = TRAIN_IDS[5]
    (tmp_path / "images" / "training" / gb.image_name(sid)).unlink()
    with pytest.raises(FileNotFoundError, match=r"GOD training stimulus image n01518878_1185.JPEG \(stimulus id "
                                                r"1518878.001185\) not found under image_root .*looked for"):
        module(tmp_path).prepare_data()
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_nan_voxels_and_bad_design(tmp_path):
    samples = bdata_samples(3)
    vc = np.flatnonzero(samples["masks"]["VC"])
    samples["voxels"][26, vc[4]] = np.nan  # an imagery sample (24 training, then 6 imagery): not served, not read
    write_bdata(tmp_path / "bdata" / "Subject3.h5", samples)
    write_jpegs(tmp_path / "images")
    module(tmp_path, cache_dir=str(tmp_path / "ok")).prepare_data()
    samples["voxels"][30, vc[4]] = np.nan  # a test perception sample
    write_bdata(tmp_path / "bdata" / "Subject3.h5", samples)
    with pytest.raises(ValueError, match=rf"'{bdata_path(tmp_path)}': the voxel data of sample 30 \(DataType 2\) is "
                                         r"NaN or Inf at column 4 of ROI 'VC'"):
        module(tmp_path).prepare_data()
    with pytest.raises(ValueError, match=r"\(DataType 2, field 'stimulus_id'\): test image \d has 35 trial\(s\), "
                                         "expected test_repeats = 30"):
        module(tmp_path, test_repeats=30).prepare_data()
    samples = bdata_samples(3)
    samples["stimulus"][40] = 1518878.0012345
    write_bdata(tmp_path / "bdata" / "Subject3.h5", samples)
    with pytest.raises(ValueError, match=r"field 'stimulus_id': sample 40 has stimulus id 1518878.0012345, not"):
        module(tmp_path).prepare_data()
    samples["stimulus"][40] = samples["stimulus"][-1]
    samples["stimulus"][3] = samples["stimulus"][-1]  # a test image shown in training
    write_bdata(tmp_path / "bdata" / "Subject3.h5", samples)
    with pytest.raises(ValueError, match=r"is both a training \(DataType 1\) and a test \(DataType 2\) image"):
        module(tmp_path).prepare_data()


def test_a_file_that_is_not_bdata(tmp_path):
    path = tmp_path / "bdata" / "Subject3.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=rf"'{bdata_path(tmp_path)}' is not a BData file: it needs a dataset"):
        module(tmp_path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"cannot read GOD BData file '.*Subject3.h5' as HDF5"):
        module(tmp_path)
