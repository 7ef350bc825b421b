"""Separate ROI inputs for the Osaka method's two ridges: NSDDataModule.roi_columns (against the NIfTI volumes),
OsakaMethod z_columns/c_columns (against sklearn and a direct StreamingRidgeCV fit), checkpoint round trip, and the
NSD configs parsing without their data."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brain2img.cli import main
from brain2img.data import schema
from brain2img.data.nsd import NSDDataModule
from brain2img.data.nsd import files as nsd_files
from brain2img.data.simulated import SimulatedDataModule
from brain2img.encoders.ridge import StreamingRidgeCV
from brain2img.methods import OsakaMethod
from brain2img.specs import CaptionsSpec
from tests.builders.nsd import TPS, build, mask_volume
from tests.builders.small import SMALL

ROOT = Path(__file__).resolve().parents[2]
LABELS = nsd_files.STREAMS_LABELS


# ------------------------------------------------------------------------------------------------ NSD roi_columns
def _nsd(tmp_path: Path, roi, **kw) -> NSDDataModule:
    return NSDDataModule(root=str(tmp_path / "nsd"), roi=roi, sessions=2, trials_per_session=TPS, image_size=32,
                         val_fraction=0.2, batch_size=4, cache_dir=str(tmp_path / "cache"), **kw)


def _volumes(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The nsdgeneral and streams volumes as written to disk, read back with nibabel."""
    read = [np.asarray(nib.load(nsd_files.roi_file(tmp_path / "nsd", 1, n)).dataobj) for n in ("nsdgeneral", "streams")]
    return read[0], read[1]


@pytest.mark.parametrize("roi", [["early", "ventral"], ["nsdgeneral", "early"]])
def test_roi_columns_match_the_volumes_and_the_served_betas(tmp_path, nsd_stimuli, roi):
    betas = build(tmp_path / "nsd", nsd_stimuli)
    dm = _nsd(tmp_path, roi, zscore="none")
    cols = dm.roi_columns  # known right after __init__, before any betas are read
    nsdgeneral, streams = _volumes(tmp_path)
    in_roi = {"nsdgeneral": lambda xyz: nsdgeneral[xyz] == 1, **{n: (lambda xyz, v=v: streams[xyz] == v)
                                                                   for n, v in LABELS.items()}}
    assert list(cols) == sorted(roi)
    for name, idx in cols.items():
        assert len(idx) > 0 and idx == sorted(set(idx))
        expected = [j for j, xyz in enumerate(map(tuple, dm.voxel_xyz)) if in_roi[name](xyz)]
        assert idx == expected
    union = sorted(set().union(*map(set, cols.values())))
    assert union == list(range(dm.brain_shape[0]))  # every served column belongs to a named ROI

    dm.prepare_data()
    dm.setup("fit")
    manifest = json.loads(dm.manifest_path.read_text())
    assert manifest["roi_columns"] == cols
    brain = np.load(dm.data_folder / "brain.npy")
    for name, idx in cols.items():
        mask = nsdgeneral == 1 if name == "nsdgeneral" else streams == LABELS[name]
        ref = np.concatenate([betas[s][:, mask].astype(np.float64) / 300.0 for s in (1, 2)])
        np.testing.assert_allclose(brain[:, idx], ref, rtol=1e-6)


def test_single_roi_columns_are_all_columns(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = _nsd(tmp_path, "nsdgeneral")
    assert dm.roi_columns == {"nsdgeneral": list(range(int((mask_volume() == 1).sum())))}


def test_z_roi_and_c_roi_pick_columns_by_name(tmp_path, nsd_stimuli):
    build(tmp_path / "nsd", nsd_stimuli)
    dm = _nsd(tmp_path, ["ventral", "early"])
    cols = dm.roi_columns
    model = OsakaMethod(brain_shape=dm.brain_shape, backbone=BACKBONE, alphas=ALPHAS, z_roi="early", c_roi="ventral",
                        roi_columns=cols)
    assert model.z_index.tolist() == cols["early"] and model.c_index.tolist() == cols["ventral"]
    with pytest.raises(ValueError, match=r"c_roi='lateral' is not a ROI of the data: it names \['early', 'ventral'\]"):
        OsakaMethod(brain_shape=dm.brain_shape, backbone=BACKBONE, c_roi="lateral", roi_columns=cols)
    with pytest.raises(ValueError, match="give z_roi or z_columns, not both"):
        OsakaMethod(brain_shape=dm.brain_shape, backbone=BACKBONE, z_roi="early", z_columns=[0], roi_columns=cols)
    with pytest.raises(ValueError, match=r"z_roi='early' is not a ROI of the data: it names none"):
        OsakaMethod(brain_shape=dm.brain_shape, backbone=BACKBONE, z_roi="early")


# ------------------------------------------------------------------------------------------------ OsakaMethod columns
BACKBONE = {"preset": "tiny", **SMALL, "condition_dim": 1280}
ALPHAS = (0.1, 10.0, 1000.0)


def test_bad_columns_are_refused_with_the_argument_named():
    torch.manual_seed(0)
    for kw, match in [({"z_columns": [0, 20]}, r"z_columns has indices outside 0\.\.19.*\[20\]"),
                      ({"c_columns": [-1, 3]}, r"c_columns has indices outside 0\.\.19.*\[-1\]"),
                      ({"z_columns": []}, "z_columns is empty"),
                      ({"c_columns": [1, 2, 1, 3, 2]}, r"c_columns repeats the indices \[1, 2\]"),
                      ({"z_columns": [1, 2.5]}, "z_columns must be a list of integer column indices.*2.5")]:
        with pytest.raises(ValueError, match=match):
            OsakaMethod(brain_shape=(20,), backbone=BACKBONE, **kw)


def _trainer(root: Path) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                     limit_val_batches=0, default_root_dir=str(root))


@pytest.fixture(scope="module")
def fitted(cache_dir, tmp_path_factory):
    """OsakaMethod fitted on simulated fMRI (60 voxels) with z from 23 and c from 31 (partly shared, unsorted)
    columns."""
    data = SimulatedDataModule(n_stimuli=41, image_size=16, n_voxels=(60, 50), cache_dir=cache_dir, batch_size=8)
    assert data.brain_shape == (60,)
    rng = np.random.default_rng(0)
    z_cols = rng.permutation(40)[:23].tolist()
    c_cols = rng.permutation(np.arange(25, 60))[:31].tolist()
    torch.manual_seed(0)
    model = OsakaMethod(brain_shape=data.brain_shape, backbone=BACKBONE, alphas=ALPHAS, n_folds=3,
                        z_columns=z_cols, c_columns=c_cols)
    trainer = _trainer(tmp_path_factory.mktemp("fit"))
    trainer.fit(model, data)
    # the training set with its targets, in the order the method does not care about
    xs, zs, cs, folds = [], [], [], []
    for batch in data.train_dataloader():
        z, c = model.targets(batch)
        xs.append(batch[schema.BRAIN].flatten(1).double())
        zs.append(z.double())
        cs.append(c.double())
        folds.append(batch[schema.STIMULUS_ID] % 3)
    train = tuple(torch.cat(t) for t in (xs, zs, cs, folds))
    return model, trainer, data, z_cols, c_cols, train


def test_column_ridges_equal_plain_ridges_on_the_columns(fitted):
    model, _, _, z_cols, c_cols, (x, z, c, fold) = fitted
    assert (model.ridge_z.n_features, model.ridge_c.n_features) == (23, 31)
    for ridge, cols, y in ((model.ridge_z, z_cols, z), (model.ridge_c, c_cols, c)):
        # the same streaming estimator fitted directly on the selected columns: same alphas, same coefficients
        direct = StreamingRidgeCV(len(cols), y.shape[1], alphas=ALPHAS, n_folds=3)
        direct.update(x[:, cols], y, fold)
        direct.fit()
        torch.testing.assert_close(ridge.alpha_, direct.alpha_)
        torch.testing.assert_close(ridge.coef_, direct.coef_, rtol=1e-6, atol=1e-9 * float(direct.coef_.abs().max()))
        # independent reference for the refit: sklearn StandardScaler + Ridge per group of targets sharing an alpha
        xs, ys = x[:, cols].numpy(), y.numpy()
        ref = np.zeros_like(ys)
        for alpha in ridge.alpha_.unique().tolist():
            t = (ridge.alpha_ == alpha).numpy()
            ref[:, t] = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(xs, ys[:, t]).predict(xs)
        ours = ridge(x[:, cols]).numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    # predictions from the full brain vector read only the selected columns
    z_hat, c_hat = model.predict_targets(x.float())
    x_other = x.clone()
    x_other[:, [j for j in range(x.shape[1]) if j not in z_cols]] = 7.0
    torch.testing.assert_close(model.predict_targets(x_other.float())[0], z_hat)
    assert not torch.allclose(model.predict_targets(x_other.float())[1], c_hat)
    torch.testing.assert_close(z_hat, model.ridge_z(x[:, z_cols]).float())
    torch.testing.assert_close(c_hat, model.ridge_c(x[:, c_cols]).float())


def test_checkpoint_round_trip_keeps_the_columns(fitted, tmp_path):
    model, trainer, data, z_cols, c_cols, (x, *_) = fitted
    path = tmp_path / "osaka.ckpt"
    trainer.save_checkpoint(path)
    loaded = OsakaMethod.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.z_columns == z_cols and loaded.hparams.c_columns == c_cols
    assert loaded.ridge_z.is_fitted and loaded.ridge_c.is_fitted
    for a, b in zip(loaded.predict_targets(x.float()), model.predict_targets(x.float()), strict=True):
        torch.testing.assert_close(a, b)
    batch = next(iter(data.val_dataloader()))
    gen = torch.Generator().manual_seed(0)
    model.hparams.num_inference_steps = loaded.hparams.num_inference_steps = 2
    recon = model.reconstruct(batch, gen)
    torch.testing.assert_close(loaded.reconstruct(batch, torch.Generator().manual_seed(0)), recon)
    assert recon.shape == (len(batch[schema.BRAIN]), 3, 16, 16)


# ------------------------------------------------------------------------------------------------ configs
def _print_config(capsys, *configs: Path, extra: tuple[str, ...] = ()) -> dict:
    args = ["fit"] + [a for c in configs for a in ("--config", str(c))] + list(extra) + ["--print_config"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_osaka_nsd_config_parses_without_data(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("NSD_ROOT", raising=False)
    cfg = _print_config(capsys, ROOT / "conf" / "osaka" / "nsd.yaml")
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert cfg["model"]["class_path"] == "brain2img.methods.OsakaMethod"
    assert cfg["data"]["class_path"] == "brain2img.data.nsd.NSDDataModule"
    assert model["backbone"]["preset"] == "sd" and model["backbone"]["image_size"] == 320
    assert model["alphas"] == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert (model["n_folds"], model["fit_intercept"], model["strength"], model["guidance_scale"],
            model["num_inference_steps"]) == (5, False, 0.8, 5.0, 50)
    assert (data["root"], data["sessions"], data["roi"], data["zscore"], data["image_size"],
            data["eval_repeats"]) == ("data/nsd", 37, ["early", "ventral"], "none", 320, "average")
    assert cfg["trainer"]["accelerator"] == "gpu"
    assert CaptionsSpec.coerce(model["captions"]).to_dict() == {"root": "data/nsd", "max_length": 77, "batch_size": 64}
    assert model["ridge_dtype"] == "float32"
    assert (model["z_roi"], model["c_roi"], model["z_columns"], model["c_columns"]) == ("early", "ventral", None, None)


def test_mindeye_nsd_config_parses_without_data(capsys):
    cfg = _print_config(capsys, ROOT / "conf" / "mindeye" / "nsd.yaml")
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert cfg["model"]["class_path"] == "brain2img.methods.MindEye"
    assert (model["network"]["preset"], model["prior"]["preset"], model["low_level"]["preset"]) == ("paper",) * 3
    assert model["image_encoder"]["kind"] == "hf_clip" and model["max_lr"] == 3e-4
    assert (data["roi"], data["batch_size"], cfg["trainer"]["max_epochs"]) == ("nsdgeneral", 32, 240)
    assert cfg["trainer"]["precision"] == "bf16-mixed"
    backbone = model["backbone"]
    assert (backbone["unet_subfolder"], backbone["n_tokens"], backbone["uncond"]) == ("image_unet", 257, "zeros")
    assert (model["scheduler"], model["num_inference_steps"], model["guidance_scale"], model["strength"],
            model["num_samples"]) == ("unipc", 20, 3.5, 0.85, 16)
