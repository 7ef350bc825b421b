"""Bad GOD npz-layout inputs and settings: each error names the file and the field (and nothing is published)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from brain2img.data.god import GODDataModule
from brain2img.io import FileFormatError
from tests.builders.god import (
    build_npz,
    heldout_pairs,
    stimulus_images,
    subject_arrays,
    train_pairs,
    write_labels,
    write_subject,
)


def module(tmp_path, **kw) -> GODDataModule:
    kw = {"root": str(tmp_path / "god"), "image_size": 32, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return GODDataModule(**kw)


def prepare_fails(tmp_path, match: str, error=ValueError, **kw) -> None:
    """prepare_data raises ``error`` matching ``match`` and leaves no folder (staging removed)."""
    with pytest.raises(error, match=match):
        module(tmp_path, **kw).prepare_data()
    cache = tmp_path / "cache"
    assert not cache.exists() or not list(cache.iterdir())


def rewrite(tmp_path, change) -> dict:
    """Build the files, then rewrite sbj_3.npz with ``change(arrays)`` applied."""
    build_npz(tmp_path / "god")
    arrays = subject_arrays(3)
    change(arrays)
    write_subject(tmp_path / "god", 3, arrays)
    return arrays


def sbj(tmp_path) -> str:
    return re.escape(str(tmp_path / "god" / "sbj_3.npz"))


# ------------------------------------------------------------------------------------------------ sbj_k.npz
def test_missing_arr_3_is_named(tmp_path):
    rewrite(tmp_path, lambda a: a.pop("arr_3"))
    prepare_fails(tmp_path, rf"'{sbj(tmp_path)}' lacks the field\(s\) \['arr_3'\]")


def test_single_trials_need_arr_4(tmp_path):
    rewrite(tmp_path, lambda a: [a.pop(k) for k in ("arr_4", "arr_5", "arr_6")])
    module(tmp_path).prepare_data()  # averaged test rows do not need it
    with pytest.raises(ValueError, match=rf"'{sbj(tmp_path)}' lacks the field\(s\) \['arr_4'\].*eval_repeats='single'"):
        module(tmp_path, eval_repeats="single").prepare_data()


def test_fmri_rows_and_image_indices_that_differ(tmp_path):
    rewrite(tmp_path, lambda a: a.update(arr_3=a["arr_3"][:-2]))
    prepare_fails(tmp_path, rf"'{sbj(tmp_path)}': field 'arr_3' .* shape \(22,\), but 'arr_0' has 24 rows: the counts "
                            "of fMRI rows and image indices differ")


def test_image_index_outside_train_images(tmp_path):
    rewrite(tmp_path, lambda a: a["arr_3"].__setitem__(4, 24))
    prepare_fails(tmp_path, rf"'{sbj(tmp_path)}': field 'arr_3' row 4 is 24, outside the 24 images of "
                            ".*images_256.npz' field 'train_images'")
    rewrite(tmp_path, lambda a: a.update(arr_3=a["arr_3"].astype(np.float64)))
    prepare_fails(tmp_path, r"field 'arr_3' .* has dtype float64, expected integer indices")


def test_missing_roi_key_names_the_masks(tmp_path):
    build_npz(tmp_path / "god")
    with pytest.raises(ValueError, match=rf"'{sbj(tmp_path)}' has no ROI mask 'MT' \(its ROI masks: \[.*'VC'.*\]"):
        module(tmp_path, roi="MT")
    rewrite(tmp_path, lambda a: a.update(VC=a["VC"].astype(np.int64)))
    with pytest.raises(ValueError, match=r"ROI mask 'VC' is int64 \(5392,\) .*expected a boolean"):
        module(tmp_path)


def test_nan_betas_are_named_not_dropped(tmp_path):
    arrays = rewrite(tmp_path, lambda a: None)
    vc = np.flatnonzero(arrays["VC"])
    arrays["arr_0"][5, vc[7]] = np.nan
    arrays["arr_0"][2, np.flatnonzero(~arrays["VC"])[0]] = np.nan  # outside VC: never read
    write_subject(tmp_path / "god", 3, arrays)
    prepare_fails(tmp_path, rf"'{sbj(tmp_path)}': field 'arr_0' .* 1 NaN or Inf value\(s\) in ROI 'VC' \(first: row 5, "
                            r"ROI column 7\)")
    module(tmp_path, roi="V1" if not arrays["V1"][vc[7]] else "V2").prepare_data()


def test_columns_that_disagree_with_the_mask(tmp_path):
    rewrite(tmp_path, lambda a: a.update(arr_2=a["arr_2"][:, :-1]))
    prepare_fails(tmp_path, r"field 'arr_2' .* \(4, 5391\), expected a numeric \(rows, 5392\) matrix: one column per "
                            "entry of the ROI mask 'VC'")


def test_test_rows_that_disagree(tmp_path):
    rewrite(tmp_path, lambda a: a.update(arr_2=a["arr_2"][:3]))
    prepare_fails(tmp_path, r"field 'arr_2' has 3 rows \(test images\) but .*images_256.npz' field 'test_images' holds "
                            "4 images")
    rewrite(tmp_path, lambda a: a.update(arr_4=np.sort(a["arr_4"])[::-1].copy()))  # wrong images for the rows
    prepare_fails(tmp_path, r"fields 'arr_1', 'arr_4' and 'arr_2': the mean of the per-trial rows of test image",
                  eval_repeats="single")
    rewrite(tmp_path, lambda a: a["arr_4"].__setitem__(0, (a["arr_4"][0] + 1) % 4))
    prepare_fails(tmp_path, r"field 'arr_4': test image \d has 3[46] trial\(s\), expected test_repeats = 35",
                  eval_repeats="single")


# ------------------------------------------------------------------------------------------------ images, labels
def test_images_of_the_wrong_dtype_or_shape(tmp_path):
    build_npz(tmp_path / "god")
    train, test = stimulus_images(32)
    path = tmp_path / "god" / "images_256.npz"
    np.savez(path, train_images=train.astype(np.float32) / 255, test_images=test)
    prepare_fails(tmp_path, rf"'{re.escape(str(path))}': field 'train_images' is float32 \(24, 32, 32, 3\), expected "
                            "uint8")
    np.savez(path, train_images=train, test_images=test[:, :, :30])
    prepare_fails(tmp_path, r"field 'test_images' is uint8 \(4, 32, 30, 3\), expected uint8 \(n_images, S, S, 3\)")
    np.savez(path, train_images=train)
    prepare_fails(tmp_path, r"images_256.npz' as NumPy .npz: it lacks the arrays \['test_images'\]", FileFormatError)
    path.unlink()
    prepare_fails(tmp_path, r"GOD images file not found: .*images_256.npz", FileNotFoundError)


def test_synset_missing_from_the_class_index_is_an_error(tmp_path):
    build_npz(tmp_path / "god")
    index = tmp_path / "god" / "imagenet_class_index.json"
    classes = json.loads(index.read_text())
    classes["2"] = ["n01639765", "frog"]  # n01645776 is in no class now
    index.write_text(json.dumps(classes))
    prepare_fails(tmp_path, r"synset n01645776 of GOD label list '.*imagenet_training_label.csv' \(row 17\) is in no "
                            r"class of ImageNet class index '.*imagenet_class_index.json'")
    index.write_text(json.dumps({"0": "n01440764"}))
    prepare_fails(tmp_path, r"class index '.*json': entry '0': 'n01440764' is not '<class number>'")


def test_label_csv_errors(tmp_path):
    build_npz(tmp_path / "god")
    csv_path = tmp_path / "god" / "imagenet_training_label.csv"
    write_labels(tmp_path / "god", train=train_pairs()[:-1])
    prepare_fails(tmp_path, rf"'{re.escape(str(csv_path))}' has 23 rows but .*images_256.npz' field 'train_images' "
                            "holds 24 images")
    lines = csv_path.read_text().splitlines()
    write_labels(tmp_path / "god")
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join([*lines[:3], "n01518878_1111.JPEG", *lines[4:]]) + "\n")
    prepare_fails(tmp_path, r"label list '.*imagenet_training_label.csv' line 4: the stimulus id 'n01518878_1111.JPEG' "
                            "is not")
    csv_path.write_text("\n".join([*lines[:3], lines[3].replace("_1111", "_1112"), *lines[4:]]) + "\n")
    prepare_fails(tmp_path, r"line 4: the file name 'n01518878_1112.JPEG' does not match the stimulus id "
                            r"1518878.001111")
    write_labels(tmp_path / "god", test=[*heldout_pairs()[:3], heldout_pairs()[0]])
    prepare_fails(tmp_path, r"imagenet_testing_label.csv': stimulus id 1443537.020000 is listed on lines \[1, 4\]")
    write_labels(tmp_path / "god", test=[*heldout_pairs()[:3], train_pairs()[0]])
    prepare_fails(tmp_path, r"stimulus id 1518878.001000 is listed in both '.*training_label.csv' and "
                            "'.*testing_label.csv'")


# ------------------------------------------------------------------------------------------------ settings
def test_settings_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"GOD subject file not found: '.*sbj_3.npz'"):
        module(tmp_path)
    build_npz(tmp_path / "god")
    for kw, match in [({"layout": "mat"}, r"layout must be one of \('npz', 'bdata'\)"),
                      ({"subject": 6}, r"subject must be one of \(1, 2, 3, 4, 5\)"),
                      ({"val_fraction": 0.0}, "need 0 < val_fraction < 1"),
                      ({"test_repeats": 0}, "test_repeats >= 1"),
                      ({"image_root": "x"}, "image_root and stimulus_key are read by layout='bdata' only"),
                      ({"layout": "bdata"}, "layout='bdata' needs image_root")]:
        with pytest.raises(ValueError, match=match):
            module(tmp_path, **kw)
    (tmp_path / "god" / "imagenet_testing_label.csv").unlink()
    prepare_fails(tmp_path, r"GOD test labels file not found: '.*imagenet_testing_label.csv'", FileNotFoundError)
