"""Small GOD files in both published layouts, with the real voxel counts of VC and few rows.

- ``npz`` (MinD-Vis / DC-MAE, written by the Weizmann Vision Lab): ``sbj_k.npz`` saved with ``np.savez`` and
  positional arrays (``arr_0`` training fMRI, ``arr_1`` per-trial test fMRI in presentation order, ``arr_2`` its
  mean per test image, ``arr_3`` / ``arr_4`` image indices, ``arr_5`` / ``arr_6`` per-voxel scores) plus one boolean
  mask per ROI; ``images_256.npz`` (``train_images``, ``test_images`` uint8); the two label csvs in the Kamitani lab's
  ``imageID_*.csv`` format; an ``imagenet_class_index.json``.
- ``bdata`` (the Kamitani lab's ``Subject<k>.h5``): written by ``bdpy.BData`` itself (``VoxelData``, ``Run``,
  ``DataType``, ``stimulus_id`` columns and ``ROI_*`` metadata over the voxels), with the stimulus JPEGs.

Design: 3 training categories x 8 images (each seen once, in a shuffled order), 4 test images x ``repeats`` trials,
VC = 3444 / 4979 / 5355 / 4656 / 6237 voxels for subjects 1-5 among ``VC + 37`` columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

VC_VOXELS = {1: 3444, 2: 4979, 3: 5355, 4: 4656, 5: 6237}
EXTRA_COLUMNS = 37  # columns outside VC
TRAIN_SYNSETS = (1518878, 1639765, 1645776)
TEST_SYNSETS = (1443537, 1621127, 1677366, 1846331)
PER_CATEGORY = 8
REPEATS = 35
N_IMAGERY = 6
# shares of VC: V1..PPA, then HVC-only and VC-only voxels; LVC = V1-V3, HVC = LOC + FFA + PPA + HVC-only
SHARES = {"V1": 0.14, "V2": 0.13, "V3": 0.12, "V4": 0.10, "LOC": 0.12, "FFA": 0.07, "PPA": 0.08, "hvc": 0.12}
ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
CLASSES = {"0": ["n01440764", "tench"], "1": ["n01518878", "ostrich"], "2": ["n01639765", "n01645776", "frog"],
           "3": ["n01443537", "goldfish"], "4": ["n01621127", "n01677366", "bird or lizard"],
           "5": ["n01846331", "duck"]}
LABELS = {1518878: 1, 1639765: 2, 1645776: 2, 1443537: 3, 1621127: 4, 1677366: 4, 1846331: 5}


def train_pairs() -> list[tuple[int, int]]:
    """(synset, image) of ``train_images`` in order: category by category."""
    return [(s, 1000 + 37 * k + i) for i, s in enumerate(TRAIN_SYNSETS) for k in range(PER_CATEGORY)]


def heldout_pairs() -> list[tuple[int, int]]:
    """(synset, image) of ``test_images`` in order."""
    return [(s, 20000 + 11 * i) for i, s in enumerate(TEST_SYNSETS)]


def int_id(pair: tuple[int, int]) -> int:
    return pair[0] * 10**6 + pair[1]


def roi_masks(subject: int) -> dict[str, np.ndarray]:
    """Boolean masks over the ``VC + EXTRA_COLUMNS`` columns, VC with the subject's real voxel count."""
    n_vc = VC_VOXELS[subject]
    rng = np.random.default_rng(subject)
    vc = np.sort(rng.choice(n_vc + EXTRA_COLUMNS, size=n_vc, replace=False))
    order = rng.permutation(vc)
    cuts = np.cumsum([int(round(share * n_vc)) for share in SHARES.values()])
    parts = dict(zip(SHARES, np.split(order, cuts)[: len(SHARES)], strict=True))
    masks = {}
    for name, cols in [*parts.items(), ("LVC", np.concatenate([parts[r] for r in ("V1", "V2", "V3")])),
                       ("HVC", np.concatenate([parts[r] for r in ("LOC", "FFA", "PPA", "hvc")])), ("VC", vc)]:
        if name != "hvc":
            masks[name] = np.zeros(n_vc + EXTRA_COLUMNS, dtype=bool)
            masks[name][cols] = True
    return masks


def subject_arrays(subject: int, repeats: int = REPEATS) -> dict[str, np.ndarray]:
    """``arr_0`` ... ``arr_6`` and the ROI masks of one subject (float64 fMRI with an offset, so z-scoring shows)."""
    rng = np.random.default_rng(100 + subject)
    n_cols = VC_VOXELS[subject] + EXTRA_COLUMNS
    n_train, n_test = len(train_pairs()), len(heldout_pairs())
    arr3 = rng.permutation(n_train)  # presentation order of the training images
    arr0 = 3.0 + 2.0 * rng.standard_normal((n_train, n_cols))
    arr4 = np.concatenate([rng.permutation(n_test) for _ in range(repeats)])  # one run = every test image once
    arr1 = 3.0 + 2.0 * rng.standard_normal((n_test * repeats, n_cols)) + np.arange(n_test)[arr4, None]
    arr2 = np.stack([arr1[arr4 == i].mean(axis=0) for i in range(n_test)])
    return {"arr_0": arr0, "arr_1": arr1, "arr_2": arr2, "arr_3": arr3, "arr_4": arr4,
            "arr_5": rng.uniform(size=n_cols), "arr_6": rng.uniform(size=n_cols), **roi_masks(subject)}


def write_subject(root: Path, subject: int, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` with the ``arr_<k>`` as positional arrays and the masks by name (as the release was written)."""
    n_arr = sum(k.startswith("arr_") for k in arrays)
    path = Path(root) / f"sbj_{subject}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if all(f"arr_{k}" in arrays for k in range(n_arr)):
        named = {k: v for k, v in arrays.items() if not k.startswith("arr_")}
        np.savez(path, *[arrays[f"arr_{k}"] for k in range(n_arr)], **named)
    else:  # a gap (a test removed e.g. arr_3): the same archive, the names given explicitly
        np.savez(path, **arrays)
    return path


def stimulus_images(side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``train_images`` ``(24, side, side, 3)`` and ``test_images`` ``(4, side, side, 3)``: smooth patterns."""
    def pattern(k: int) -> np.ndarray:
        small = np.random.default_rng(500 + k).integers(0, 256, (4, 4, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)
    n_train = len(train_pairs())
    return (np.stack([pattern(k) for k in range(n_train)]),
            np.stack([pattern(n_train + k) for k in range(len(heldout_pairs()))]))


def write_labels(root: Path, train=None, test=None) -> None:
    """The label csvs (``<synset>.<image, 6 digits>,"n<synset>_<image>.JPEG"``) and the class index json."""
    root = Path(root)
    for name, pairs in (("imagenet_training_label.csv", train or train_pairs()),
                        ("imagenet_testing_label.csv", test or heldout_pairs())):
        (root / name).write_text("".join(f'{s}.{i:06d},"n{s:08d}_{i}.JPEG"\n' for s, i in pairs))
    (root / "imagenet_class_index.json").write_text(json.dumps(CLASSES))


def build_npz(root: str | Path, subjects=(3,), side: int = 32, repeats: int = REPEATS) -> dict[int, dict]:
    """Write the npz layout under ``root``; returns the arrays of each subject."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = {s: subject_arrays(s, repeats) for s in subjects}
    for s, arrays in out.items():
        write_subject(root, s, arrays)
    train, test = stimulus_images(side)
    np.savez(root / "images_256.npz", train_images=train, test_images=test)
    write_labels(root)
    return out


# --------------------------------------------------------------------------------------------------- BData
def bdata_samples(subject: int, repeats: int = REPEATS) -> dict[str, np.ndarray]:
    """The samples of a BData file: training (DataType 1), imagery (3, between them) and test (2) perception."""
    a = subject_arrays(subject, repeats)
    train_f = np.asarray([float(f"{s}.{i:06d}") for s, i in train_pairs()])
    test_f = np.asarray([float(f"{s}.{i:06d}") for s, i in heldout_pairs()])
    rng = np.random.default_rng(7)
    imagery = 1.0 + rng.standard_normal((N_IMAGERY, a["arr_0"].shape[1]))
    return {"voxels": np.concatenate([a["arr_0"], imagery, a["arr_1"]]),
            "data_type": np.concatenate([np.ones(len(a["arr_0"])), np.full(N_IMAGERY, 3.0),
                                         np.full(len(a["arr_1"]), 2.0)]),
            "stimulus": np.concatenate([train_f[a["arr_3"]], test_f[np.arange(N_IMAGERY) % len(test_f)],
                                        test_f[a["arr_4"]]]),
            "run": np.concatenate([np.arange(len(a["arr_0"])) // 8 + 1, np.full(N_IMAGERY, 30),
                                   np.arange(len(a["arr_1"])) // len(test_f) + 40]).astype(float),
            "masks": roi_masks(subject), "arrays": a}


def write_bdata(path: str | Path, samples: dict, stimulus_key: str = "stimulus_id", skip: tuple[str, ...] = ()) -> Path:
    """Save the samples with ``bdpy.BData`` (``skip`` leaves out metadata keys, e.g. ``("DataType",)``)."""
    import bdpy

    bd = bdpy.BData()
    bd.add(samples["voxels"], "VoxelData")
    for key, field in (("Run", "run"), ("DataType", "data_type"), (stimulus_key, "stimulus")):
        if key not in skip:
            bd.add(samples[field], key)
    for name, mask in samples["masks"].items():
        if f"ROI_{name}" not in skip:
            bd.add_metadata(f"ROI_{name}", mask.astype(float), f"1 = ROI {name}", where="VoxelData")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bd.save(str(path))
    return path


def write_jpegs(image_root: str | Path, side: int = 40) -> dict[int, Path]:
    """The stimulus JPEGs: training flat in ``training/``, test in ``test/<synset>/`` (get_stimulusimages.m)."""
    root = Path(image_root)
    train, test = stimulus_images(side)
    out = {}
    for kind, pairs, images in (("training", train_pairs(), train), ("test", heldout_pairs(), test)):
        for (s, i), im in zip(pairs, images, strict=True):
            name = f"n{s:08d}_{i}.JPEG"
            path = root / kind / (f"n{s:08d}/{name}" if kind == "test" else name)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(path, format="JPEG", quality=95)
            out[int_id((s, i))] = path
    return out
