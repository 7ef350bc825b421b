"""NSDDataModule on small files in the NSD layout (hdf5/NIfTI betas, ROI volumes, imgBrick, expdesign .mat,
responses.tsv) and in the MindEye2 layout, checked against NumPy/SciPy/PIL."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy.stats import zscore

from brain2img.data import schema
from brain2img.data.nsd import NSDDataModule
from brain2img.data.nsd import files as nsd_files
from tests.builders.nsd import (
    KNOWN_COL,
    KNOWN_XYZ,
    MASK_XYZ,
    N_IMG,
    ORDER,
    SHARED,
    SUBJECTIM0,
    TPS,
    X,
    Y,
    Z,
    build,
    mask_volume,
    save_nifti,
    session_betas,
    streams_volume,
    trial_ids,
)


def module(tmp_path, **kw) -> NSDDataModule:
    kw = {"root": str(tmp_path / "nsd"), "sessions": 2, "trials_per_session": TPS, "image_size": 32,
          "val_fraction": 0.2, "batch_size": 4, "cache_dir": str(tmp_path / "cache"), **kw}
    return NSDDataModule(**kw)


def reference_brain(betas, sessions=(1, 2)) -> np.ndarray:
    """NumPy reference: per session, the mask voxels in C order of (X, Y, Z), divided by 300."""
    mask = mask_volume() == 1
    return np.concatenate([betas[s][:, mask].astype(np.float64) / 300.0 for s in sessions])


# ------------------------------------------------------------------------------------------------ behaviour
def test_batch_schema_and_shapes(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path)
    assert (dm.modality, dm.brain_shape, dm.image_size, dm.sfreq) == ("fmri", (len(MASK_XYZ),), 32, None)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == set(schema.SAMPLE_KEYS)
    assert batch["brain"].shape == (4, len(MASK_XYZ)) and batch["brain"].dtype == torch.float32
    assert batch["image"].shape == (4, 3, 32, 32) and 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert (batch["subject"] == 1).all() and (batch["label"] == -1).all()
    assert len(dm.dataset("train")) + len(dm.dataset("val")) + len(dm.dataset("test")) == 2 * TPS


@pytest.mark.parametrize("fmt", ["hdf5", "nifti"])
def test_voxel_selection_and_scaling_match_numpy(tmp_path, nsd_stimuli, fmt):
    betas = {s: session_betas(s) for s in (1, 2)}
    betas[2][4][KNOWN_XYZ] = 3000  # session 2, trial 4, voxel (x, y, z) = (4, 1, 2)
    build(tmp_path / "nsd", nsd_stimuli, betas=betas, fmt=fmt)
    dm = module(tmp_path, betas_format=fmt, zscore="none")
    dm.setup()
    brain = np.asarray(dm._data.brain)
    np.testing.assert_allclose(brain, reference_brain(betas), rtol=1e-6)
    assert tuple(dm.voxel_xyz[KNOWN_COL]) == KNOWN_XYZ
    row = np.flatnonzero((dm.trial_sessions == 2) & (dm.trial_rows == 4))
    assert brain[row[0], KNOWN_COL] == pytest.approx(10.0)
    np.testing.assert_array_equal(dm._data.stimulus_ids[dm._data.trial_stimulus], trial_ids())


def test_per_session_zscore_matches_scipy(tmp_path, nsd_stimuli):
    betas = build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path)
    dm.setup()
    brain = np.asarray(dm._data.brain, dtype=np.float64)
    ref = reference_brain(betas)
    for s in (1, 2):
        rows = np.flatnonzero(dm.trial_sessions == s)
        assert len(rows) == TPS
        np.testing.assert_allclose(brain[rows], zscore(ref[rows], axis=0, ddof=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(brain[rows].mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(brain[rows].std(0), 1.0, atol=1e-5)


def test_splits_shared_test_val_from_train_and_manifest(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path)
    dm.setup()
    d = dm._data
    ids = {name: set(d.stimulus_ids[d.splits[name]].tolist()) for name in ("train", "val", "test")}
    shown = set(trial_ids().tolist())
    assert ids["test"] == shown & set(SHARED) == {3, 7, 11}
    assert not ids["val"] & set(SHARED) and not ids["val"] & ids["train"] and not ids["train"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == shown
    assert len(ids["val"]) == round(len(shown - set(SHARED)) * 0.2)
    other = module(tmp_path, seed=5)
    other.setup()
    assert set(other._data.stimulus_ids[other._data.splits["test"]].tolist()) == ids["test"]
    manifest = json.loads(dm.manifest_path.read_text())
    counts = {i: int((trial_ids() == i).sum()) for i in shown}
    for name in ("train", "val", "test"):
        entry = manifest["splits"][name]
        assert entry["repeats"] == [counts[i] for i in entry["stimulus_ids"]]
        trials = np.asarray(entry["trial_ids"])
        assert entry["sessions"] == (trials // TPS + 1).tolist() and entry["session_rows"] == (trials % TPS).tolist()
    assert manifest["sessions"] == [1, 2]
    src = manifest["sources"]
    assert src["betas_session01"]["fingerprint_kind"].startswith("size") and src["responses"]["fingerprint_kind"] == \
        "sha256"
    assert set(manifest["checksums"]) >= {"brain.npy", "images.npy", "voxel_xyz.npy"}


def test_eval_repeats_average_and_single(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path, eval_repeats="average")
    dm.setup()
    d = dm._data
    brain = np.asarray(d.brain, dtype=np.float64)
    test_ids = trial_ids()[np.isin(trial_ids(), SHARED)]
    averaged = next(iter(dm.test_dataloader()))
    assert averaged["brain"].shape[0] == 3
    for row, sid in zip(averaged["brain"].numpy(), averaged["stimulus_id"].tolist(), strict=True):
        trials = np.flatnonzero(d.stimulus_ids[d.trial_stimulus] == sid)
        assert len(trials) == 3
        np.testing.assert_allclose(row, brain[trials].mean(0), rtol=1e-5, atol=1e-6)
    single = module(tmp_path, eval_repeats="single")
    loader = single.test_dataloader()
    sids = torch.cat([b["stimulus_id"] for b in loader]).numpy()
    assert sorted(sids.tolist()) == sorted(test_ids.tolist())


def test_images_are_pil_bicubic_resizes_of_imgbrick(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path, image_size=40)
    images, ids = dm.stimulus_images(("train", "val", "test"))
    assert images.shape == (len(set(trial_ids().tolist())), 3, 40, 40)
    for img, sid in zip(images, ids.tolist(), strict=True):
        ref = np.asarray(Image.fromarray(nsd_stimuli[1][sid]).resize((40, 40), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal((img * 255).round().byte().permute(1, 2, 0).numpy(), ref)


def test_streams_roi_union(tmp_path, nsd_stimuli):
    betas = build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path, roi=["ventral", "early", "nsdgeneral"], zscore="none")
    streams = streams_volume()
    mask = np.isin(streams, [1, 5]) | (mask_volume() == 1)
    assert dm.brain_shape == (int(mask.sum()),)
    np.testing.assert_array_equal(dm.voxel_xyz, np.argwhere(mask))
    dm.setup()
    np.testing.assert_allclose(np.asarray(dm._data.brain)[:TPS], betas[1][:, mask] / 300.0, rtol=1e-6)


def test_cache_reuse_and_invalidation(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = module(tmp_path)
    dm.prepare_data()
    brain_file = dm.data_folder / "brain.npy"
    stamp = brain_file.stat().st_mtime_ns
    again = module(tmp_path)
    assert again.data_folder == dm.data_folder
    again.prepare_data()
    again.setup()
    assert brain_file.stat().st_mtime_ns == stamp
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 1
    stim = np.load(dm.data_folder / "stimulus_ids.npy")
    np.save(dm.data_folder / "stimulus_ids.npy", stim[::-1])
    with pytest.raises(ValueError, match="checksum mismatch for cached file .*stimulus_ids.npy"):
        module(tmp_path).setup()
    assert module(tmp_path, image_size=24).data_folder != dm.data_folder
    path = nsd_files.responses_file(tmp_path / "nsd", 1)
    path.write_text(path.read_text() + "\n")
    assert module(tmp_path).data_folder != dm.data_folder


# ------------------------------------------------------------------------------------------------ errors
def test_betas_shape_disagreeing_with_mask(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    path = nsd_files.betas_file(tmp_path / "nsd", 1, 2)
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=session_betas(2).transpose(0, 1, 2, 3))  # (trials, X, Y, Z): not transposed
    with pytest.raises(ValueError, match=rf"betas file '{path}' \(session 2\) has shape \(12, 6, 5, 4\), expected "
                                         r"\(trials, Z, Y, X\) = \(12, 4, 5, 6\)"):
        module(tmp_path).prepare_data()
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=session_betas(2)[:10].transpose(0, 3, 2, 1))
    with pytest.raises(ValueError, match=r"has shape \(10, 4, 5, 6\), expected"):
        module(tmp_path).prepare_data()


def test_nan_betas_name_file_session_and_trial(tmp_path, nsd_stimuli):
    betas = {s: session_betas(s, np.float32) for s in (1, 2)}
    betas[2][5][MASK_XYZ[3]] = np.nan
    build(tmp_path / "nsd", nsd_stimuli, betas=betas)
    path = nsd_files.betas_file(tmp_path / "nsd", 1, 2)
    with pytest.raises(ValueError, match=rf"'{path}' \(session 2\) has NaN or Inf betas in trial 5 .* voxel 3"):
        module(tmp_path, zscore="none").prepare_data()
    assert not [p for p in (tmp_path / "cache").iterdir()]  # the temporary folder is removed


def test_missing_session_file(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    missing = nsd_files.betas_file(tmp_path / "nsd", 1, 3)
    with pytest.raises(FileNotFoundError, match=rf"betas file of session 3 not found: '{missing}'"):
        module(tmp_path, sessions=[1, 3]).prepare_data()


def test_id_without_image(tmp_path, nsd_stimuli):
    subjectim0 = list(SUBJECTIM0)
    subjectim0[5] = N_IMG  # a valid NSD id, but the tiny imgBrick holds 30 images
    build(tmp_path / "nsd", nsd_stimuli, subjectim0=subjectim0)
    with pytest.raises(ValueError, match=rf"73k id {N_IMG} \(0-based\) has no image: '.*nsd_stimuli.hdf5' dataset "
                                         rf"'imgBrick' holds {N_IMG} images"):
        module(tmp_path).prepare_data()


def test_behaviour_errors(tmp_path, nsd_stimuli):
    rows = [(1, g // TPS + 1, g % TPS // 6 + 1, g % 6 + 1, SUBJECTIM0[ORDER[g]] + 1, 0) for g in range(2 * TPS)]
    build(tmp_path / "a", nsd_stimuli, responses=rows[:-1])
    path = nsd_files.responses_file(tmp_path / "a", 1)
    with pytest.raises(ValueError, match=rf"'{path}': session 2 has 11 rows, so beta row 11 \(0-based\) of session 2 "
                                         r"has no behaviour row"):
        module(tmp_path, root=str(tmp_path / "a")).prepare_data()
    bad_id = [*rows[:3], (*rows[3][:4], 73001, 0), *rows[4:]]
    build(tmp_path / "b", nsd_stimuli, responses=bad_id)
    with pytest.raises(ValueError, match=r"line 5: 73KID = 73001 is not a 1-based id"):
        module(tmp_path, root=str(tmp_path / "b")).prepare_data()
    wrong = [*rows[:3], (*rows[3][:4], rows[3][4] + 1, 0), *rows[4:]]
    build(tmp_path / "c", nsd_stimuli, responses=wrong)
    with pytest.raises(ValueError, match=r"session 1 trial 3 \(0-based\) showed 73k id .* subjectim\[0, "
                                         r"masterordering\[3\]\]"):
        module(tmp_path, root=str(tmp_path / "c")).prepare_data()
    swapped = [rows[1], rows[0], *rows[2:]]
    build(tmp_path / "d", nsd_stimuli, responses=swapped)
    with pytest.raises(ValueError, match="not in presentation order"):
        module(tmp_path, root=str(tmp_path / "d")).prepare_data()


def test_mask_and_roi_errors(tmp_path, nsd_stimuli):
    empty = np.where(mask_volume() == 1, 0, mask_volume()).astype(np.int16)
    build(tmp_path / "nsd", nsd_stimuli, nsdgeneral=empty)
    with pytest.raises(ValueError, match=r"ROI \['nsdgeneral'\] selects no voxel .*nsdgeneral.nii.gz"):
        module(tmp_path)
    with pytest.raises(ValueError, match=r"unknown ROI name\(s\) \['V1'\]: valid names are \['nsdgeneral', 'early'"):
        module(tmp_path, roi=["early", "V1"])
    save_nifti(nsd_files.roi_file(tmp_path / "nsd", 1, "nsdgeneral"), np.full((X, Y, Z), 2, np.int16))
    with pytest.raises(ValueError, match=r"nsdgeneral.nii.gz' holds 120 value\(s\) that are not integers in \[-1, 1\]"):
        module(tmp_path)


# ------------------------------------------------------------------------------------------------ MindEye2 layout
@pytest.mark.parametrize("behav_kind", ["pairs", "mindeye2"])
def test_mindeye2_layout(tmp_path, behav_kind):
    root = tmp_path / "me2"
    root.mkdir()
    rng = np.random.default_rng(0)
    n_vox, side = 9, 48
    betas = rng.standard_normal((3 * TPS, n_vox)).astype(np.float32)
    with h5py.File(root / "betas_all_subj01_fp32_renorm.hdf5", "w") as f:
        f.create_dataset("betas", data=betas)
    images = rng.uniform(0, 1, (N_IMG, 3, side, side)).astype(np.float16)
    with h5py.File(root / "coco_images_224_float16.hdf5", "w") as f:
        f.create_dataset("images", data=images)
    rows = rng.permutation(np.r_[0:10, 12:20, 24:36])  # rows 10, 11, 20..23 have no trial; order shuffled
    ids = np.where(rows % 4 == 0, 7, 12 + rows % 15)  # 73k id 7 (shared) repeats; 12..26 are not shared
    if behav_kind == "pairs":
        behav = np.stack([ids, rows], axis=1)
    else:
        behav = np.full((len(rows), 1, 17), -1.0)
        behav[:, 0, 0], behav[:, 0, 5] = ids, rows
    np.save(root / "behav.npy", behav)
    scipy.io.savemat(root / "nsd_expdesign.mat", {"sharedix": np.asarray([SHARED]) + 1,
                                                  "masterordering": np.asarray([ORDER]) + 1,
                                                  "subjectim": np.ones((8, 20), dtype=np.int64)})
    dm = NSDDataModule(root=str(root), layout="mindeye2", sessions=[1, 3], trials_per_session=TPS, image_size=32,
                       val_fraction=0.2, mindeye2_behav_path=str(root / "behav.npy"),
                       expdesign_path=str(root / "nsd_expdesign.mat"), cache_dir=str(tmp_path / "cache"))
    assert dm.brain_shape == (n_vox,) and dm.zscore == "none" and dm.voxel_xyz is None
    dm.setup()
    keep = np.sort(rows[(rows < TPS) | (rows >= 2 * TPS)])
    np.testing.assert_array_equal(np.asarray(dm._data.brain), betas[keep])
    np.testing.assert_array_equal(dm.trial_sessions, keep // TPS + 1)
    np.testing.assert_array_equal(dm.trial_rows, keep % TPS)
    id_of_row = dict(zip(rows.tolist(), ids.tolist(), strict=True))
    np.testing.assert_array_equal(dm._data.stimulus_ids[dm._data.trial_stimulus], [id_of_row[r] for r in keep])
    assert dm._data.stimulus_ids[dm._data.splits["test"]].tolist() == [7]
    for pos, sid in enumerate(dm._data.stimulus_ids.tolist()):
        u8 = np.round(images[sid].astype(np.float32) * 255).astype(np.uint8).transpose(1, 2, 0)
        ref = np.asarray(Image.fromarray(u8).resize((32, 32), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(dm._data.images[pos], ref)
    bad = behav.copy()
    (bad[0] if behav_kind == "pairs" else bad[0, 0])[0] = -1
    np.save(root / "behav.npy", bad)
    with pytest.raises(ValueError, match=r"behav.npy' trial 0: 73k id = -1.0 is not an index >= 0"):
        NSDDataModule(root=str(root), layout="mindeye2", sessions=[1, 3], trials_per_session=TPS, image_size=32,
                      mindeye2_behav_path=str(root / "behav.npy"), expdesign_path=str(root / "nsd_expdesign.mat"),
                      cache_dir=str(tmp_path / "cache")).prepare_data()
