"""BOLD5000DataModule on small files in the published layout (tests/builders/bold5000.py), checked against an
independent NumPy reading of the same files (sorted lists, np.loadtxt, np.load, a hand z-score)."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from glob import glob
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brain2img.data import schema
from brain2img.data.bold5000 import BOLD5000DataModule
from brain2img.data.bold5000 import files as bf
from brain2img.io import FileFormatError
from tests.builders import bold5000 as b5

ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")


def module(tmp_path: Path, **kwargs) -> BOLD5000DataModule:
    args = {"root": str(tmp_path / "b5"), "image_size": b5.SIDE, "val_fraction": 0.2,
            "cache_dir": str(tmp_path / "cache"), **kwargs}
    return BOLD5000DataModule(**args)


def numpy_reading(root: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray], list[str]]:
    """Betas (per ROI the sorted files: LH then RH), trial names, images and the repeated list, read with NumPy."""
    files = sorted(glob(str(root / "BOLD5000_GLMsingle_ROI_betas" / "py" / "*.npy")))
    raw = np.concatenate([np.load(f) for roi in ROIS for f in files if "CSI1" in f and roi in f], axis=1)
    lists = root / "BOLD5000_Stimuli" / "Stimuli_Presentation_Lists" / "CSI1"
    names: list[str] = []
    for session in sorted(os.listdir(lists)):
        if (lists / session).is_dir():
            for run in sorted(f for f in os.listdir(lists / session) if f.endswith(".txt")):
                names += np.atleast_1d(np.loadtxt(lists / session / run, dtype=str)).tolist()
    names = [n.replace("rep_", "", 1) if n.startswith("rep_") else n for n in names]
    scene = root / "BOLD5000_Stimuli" / "Scene_Stimuli"
    images = np.load(scene / "Presented_Stimuli" / "img_dict.npy", allow_pickle=True).item()
    repeated = np.loadtxt(scene / "repeated_stimuli_113_list.txt", dtype=str).tolist()
    return raw.astype(np.float64), names, images, repeated


@pytest.fixture
def built(tmp_path):
    return b5.build(tmp_path / "b5")


# ------------------------------------------------------------------------------------------------ shapes, values
def test_shapes_schema_and_roi_columns(tmp_path, built):
    dm = module(tmp_path, batch_size=8)
    assert dm.modality == "fmri" and dm.brain_shape == (b5.N_VOXELS,) and dm.sfreq is None
    start, expected = 0, {}
    for roi in ROIS:  # per ROI: the LH columns, then the RH columns
        width = b5.WIDTHS[(roi, "LH")] + b5.WIDTHS[(roi, "RH")]
        expected[roi] = list(range(start, start + width))
        start += width
    assert dm.roi_columns == expected
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(schema.SAMPLE_KEYS)
    assert batch["brain"].shape == (8, b5.N_VOXELS) and batch["brain"].dtype == torch.float32
    assert batch["image"].shape == (8, 3, b5.SIDE, b5.SIDE) and 0 <= batch["image"].min() <= batch["image"].max() <= 1
    assert (batch["label"] == -1).all() and (batch["subject"] == 1).all()
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["roi_columns"] == expected and manifest["subject"] == "CSI1"


def test_values_against_numpy_reading(tmp_path, built):
    raw, names, images, repeated = numpy_reading(tmp_path / "b5")
    np.testing.assert_array_equal(raw, np.concatenate([built["betas"][k] for k in b5.WIDTHS], axis=1))
    assert names == b5.trial_names()
    dm = module(tmp_path)
    dm.setup()
    d = dm._data
    assert [dm.stimulus_names[int(d.stimulus_ids[s])] for s in d.trial_stimulus] == names
    assert list(dm.stimulus_names.values()) == sorted(dm.stimulus_names.values())
    assert list(dm.stimulus_names) == [sorted(images).index(n) for n in dm.stimulus_names.values()]
    name_of = {int(d.stimulus_ids[p]): dm.stimulus_names[int(d.stimulus_ids[p])] for p in range(len(d.stimulus_ids))}
    val = {name_of[int(d.stimulus_ids[p])] for p in d.splits["val"]}
    train_rows = [k for k, n in enumerate(names) if n not in repeated and n not in val]
    mean, std = raw[train_rows].mean(), raw[train_rows].std()
    np.testing.assert_allclose(np.asarray(d.brain), (raw - mean) / std, rtol=1e-5, atol=1e-6)
    zscore = json.loads(dm.manifest_path.read_text())["zscore"]
    np.testing.assert_allclose([zscore["mean"], zscore["std"]], [mean, std], rtol=1e-12)
    test = dm.dataset("test", "average")
    assert len(test) == 3
    for k in range(len(test)):
        item = test[k]
        rows = [i for i, n in enumerate(names) if n == name_of[item["stimulus_id"]]]
        np.testing.assert_allclose(item["brain"].numpy(), ((raw[rows] - mean) / std).mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal((item["image"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0),
                                      images[name_of[item["stimulus_id"]]])
    small = module(tmp_path, image_size=16)
    small.setup()
    for p, sid in enumerate(small._data.stimulus_ids.tolist()):
        ref = Image.fromarray(images[name_of[sid]]).resize((16, 16), Image.Resampling.BICUBIC)
        np.testing.assert_array_equal(small._data.images[p], np.asarray(ref))


def test_split_sizes_and_seeded_val(tmp_path, built):
    dm = module(tmp_path)
    dm.setup()
    d, names = dm._data, dm.stimulus_names
    split_names = {k: {names[int(d.stimulus_ids[p])] for p in v} for k, v in d.splits.items()}
    assert split_names["test"] == set(b5.REPEATED_SHOWN)  # the repeated image never shown is left out
    assert len(split_names["val"]) == round(0.2 * len(b5.SINGLE)) and not split_names["val"] & set(b5.REPEATED)
    assert split_names["train"] | split_names["val"] == set(b5.SINGLE)
    assert len(dm.dataset("train", "single")) == len(b5.SINGLE) - len(split_names["val"])
    assert len(dm.dataset("test", "single")) == sum(b5.REPEATED_SHOWN.values())
    assert len(dm.test_dataloader().dataset) == len(b5.REPEATED_SHOWN)
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["repeated_not_shown"] == ["unseen_by_csi1.jpg"]
    assert manifest["counts"]["per_split_trials"]["test"] == sum(b5.REPEATED_SHOWN.values())
    again = module(tmp_path)
    again.setup()
    np.testing.assert_array_equal(again._data.splits["val"], d.splits["val"])
    other = module(tmp_path, seed=1)
    other.setup()
    assert not np.array_equal(other._data.splits["val"], d.splits["val"])
    np.testing.assert_array_equal(other._data.splits["test"], d.splits["test"])


def test_roi_subset_in_reference_order(tmp_path, built):
    dm = module(tmp_path, rois=["PPA", "EarlyVis"])
    assert dm.rois == ["EarlyVis", "PPA"] and dm.brain_shape == (8,)
    assert dm.roi_columns == {"EarlyVis": [0, 1, 2, 3, 4], "PPA": [5, 6, 7]}
    dm.setup()
    raw = np.concatenate([built["betas"][k] for k in (("EarlyVis", "LH"), ("EarlyVis", "RH"), ("PPA", "LH"),
                                                      ("PPA", "RH"))], axis=1).astype(np.float64)
    brain = np.asarray(dm._data.brain)
    np.testing.assert_allclose(brain.std(0) / brain.std(0)[0], raw.std(0) / raw.std(0)[0], rtol=1e-5)
    with pytest.raises(ValueError, match=r"rois must be distinct names among \['EarlyVis', .*\(unknown: \['V1'\]\)"):
        module(tmp_path, rois=["V1"])
    with pytest.raises(ValueError, match="subject must be a BOLD5000 subject 1..4"):
        module(tmp_path, subject=5)
    with pytest.raises(ValueError, match="need 0 < val_fraction < 1"):
        module(tmp_path, val_fraction=0.0)


def test_cache_reuse_and_invalidation(tmp_path, built):
    dm = module(tmp_path)
    dm.prepare_data()
    stamp = (dm.data_folder / "brain.npy").stat().st_mtime_ns
    again = module(tmp_path)
    assert again.data_folder == dm.data_folder
    again.setup()
    assert (dm.data_folder / "brain.npy").stat().st_mtime_ns == stamp
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1
    assert module(tmp_path, image_size=16).data_folder != dm.data_folder
    assert module(tmp_path, rois="LOC").data_folder != dm.data_folder
    run = bf.presentation_dir(tmp_path / "b5", 1) / b5.RUNS[-1][0] / b5.RUNS[-1][1]
    run.write_text(run.read_text() + "\n")  # a blank line changes the file, not the trials
    changed = module(tmp_path)
    assert changed.data_folder != dm.data_folder
    changed.setup()
    np.testing.assert_array_equal(np.asarray(changed._data.brain), np.asarray(again._data.brain))
    np.save(bf.betas_file(tmp_path / "b5", 1, "RH", "RSC"), built["betas"][("RSC", "RH")] + 1)
    assert module(tmp_path).data_folder not in (dm.data_folder, changed.data_folder)


# ------------------------------------------------------------------------------------------------ errors
def test_missing_hemisphere_file(tmp_path, built):
    path = bf.betas_file(tmp_path / "b5", 1, "RH", "OPA")
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"CSI1 RHOPA\) file not found: '{path}' \(ROI OPA, hemisphere RH; "
                                                r"the LH file '.*_allses_LHOPA.npy' is there"):
        module(tmp_path)


def test_hemispheres_with_different_rows(tmp_path):
    betas = b5.make_betas()
    betas[("LOC", "RH")] = betas[("LOC", "RH")][:-1]
    b5.build(tmp_path / "b5", betas=betas)
    with pytest.raises(ValueError, match=rf"RHLOC\) '.*_allses_RHLOC.npy' has {b5.N_TRIALS - 1} rows \(trials\) but "
                                         rf"'.*_allses_LHEarlyVis.npy' \(LHEarlyVis\) has {b5.N_TRIALS}"):
        module(tmp_path)


def test_rows_differ_from_listed_trials(tmp_path):
    b5.build(tmp_path / "b5", lines=b5.list_lines(b5.trial_names())[:-2])
    lists = bf.presentation_dir(tmp_path / "b5", 1)
    with pytest.raises(ValueError, match=rf"'.*_allses_LHEarlyVis.npy' \(and every chosen ROI file\) have "
                                         rf"{b5.N_TRIALS} rows \(trials\), but the presentation lists under '{lists}' "
                                         rf"name {b5.N_TRIALS - 2} trials \(4 list files\)"):
        module(tmp_path).prepare_data()
    assert not list((tmp_path / "cache").iterdir())  # the staging folder is removed


def test_listed_image_not_in_img_dict(tmp_path):
    lines = b5.list_lines(b5.trial_names())
    lines[1] = "rep_missing_image.jpg"
    b5.build(tmp_path / "b5", lines=lines)
    run = bf.presentation_dir(tmp_path / "b5", 1) / b5.RUNS[0][0] / b5.RUNS[0][1]
    with pytest.raises(ValueError, match=rf"list '{run}' line 2 \(trial 1\): image 'missing_image.jpg' is not a key "
                                         rf"of the image dict '{bf.img_dict_file(tmp_path / 'b5')}'"):
        module(tmp_path).prepare_data()
    lines[1] = "two names.jpg"
    b5.build(tmp_path / "c", lines=lines)
    with pytest.raises(ValueError, match=r"run01.txt' line 2 holds 2 fields \['two', 'names.jpg'\]"):
        module(tmp_path, root=str(tmp_path / "c")).prepare_data()


def test_nan_betas(tmp_path):
    betas = b5.make_betas()
    betas[("PPA", "LH")][7, 1] = np.nan
    b5.build(tmp_path / "b5", betas=betas)
    with pytest.raises(ValueError, match=r"\(CSI1 LHPPA\) '.*_allses_LHPPA.npy' holds 1 NaN or Inf value\(s\) "
                                         r"\(first: trial \(row\) 7, voxel \(column\) 1\)"):
        module(tmp_path).prepare_data()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((b5.SIDE, b5.SIDE, 3), np.float32), rf"is float32 \({b5.SIDE}, {b5.SIDE}, 3\), expected uint8"),
    (np.zeros((b5.SIDE, b5.SIDE), np.uint8), rf"is uint8 \({b5.SIDE}, {b5.SIDE}\), expected uint8 \(H, W, 3\)"),
    (np.zeros((b5.SIDE, b5.SIDE + 2, 3), np.uint8), rf"is {b5.SIDE} x {b5.SIDE + 2}, expected a square"),
])
def test_bad_image(tmp_path, bad, message):
    images = b5.make_images(b5.SINGLE + list(b5.REPEATED_SHOWN))
    images["scene3.jpg"] = bad
    b5.build(tmp_path / "b5", images=images)
    with pytest.raises(ValueError, match=rf"image dict '{bf.img_dict_file(tmp_path / 'b5')}'.*image 'scene3.jpg' "
                                         + message):
        module(tmp_path).prepare_data()


def test_img_dict_of_other_objects_is_refused(tmp_path, built):
    path = bf.img_dict_file(tmp_path / "b5")
    np.save(path, {"scene0.jpg": OrderedDict()}, allow_pickle=True)
    with pytest.raises(FileFormatError, match=rf"'{path}' .*refused global 'collections.OrderedDict'"):
        bf.read_img_dict(path)
    np.save(path, np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(FileFormatError, match=r"it holds a uint8 array of shape \(2, 4, 4, 3\), not a pickled object"):
        bf.read_img_dict(path)
    np.save(path, np.asarray([1, 2], dtype=object), allow_pickle=True)
    with pytest.raises(FileFormatError, match=r"holds a object array of shape \(2,\)"):
        bf.read_img_dict(path)


def test_missing_or_unshown_repeated_list(tmp_path):
    b5.build(tmp_path / "b5", repeated=None)
    path = bf.repeated_list_file(tmp_path / "b5")
    with pytest.raises(FileNotFoundError, match=r"repeated stimuli list \(repeated_stimuli_113_list.txt: the test "
                                                rf"images\) file not found: '{path}'"):
        module(tmp_path).prepare_data()
    b5.build(tmp_path / "c", repeated=["unseen_by_csi1.jpg"])
    with pytest.raises(ValueError, match="no image of repeated_stimuli_113_list.txt was shown to the subject"):
        module(tmp_path, root=str(tmp_path / "c")).prepare_data()
