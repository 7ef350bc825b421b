"""The Osaka NSD config end to end on tiny files in the NSD formats: each ridge's ROI by name (the datamodule's
roi_columns linked into the model), c from COCO captions via the SD folder's text encoder, fit (closed form), test
metrics, and predict from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from brain2img.cli import main
from brain2img.data.nsd import NSDDataModule
from brain2img.methods import OsakaMethod
from tests.builders.nsd import N_IMG, TPS, build, write_nsd_captions
from tests.builders.sd import write_sd_folder

ROOT = Path(__file__).resolve().parents[2]


def test_osaka_nsd_config_fits_on_captions_and_predicts(tmp_path, nsd_stimuli, monkeypatch):
    nsd, sd = tmp_path / "nsd", tmp_path / "sd"
    build(nsd, nsd_stimuli)
    write_nsd_captions(nsd, rows=N_IMG)
    write_sd_folder(sd)
    monkeypatch.setenv("NSD_ROOT", str(nsd))
    monkeypatch.setenv("SD14_PATH", str(sd))
    cols = NSDDataModule(root=str(nsd), roi=["early", "ventral"], sessions=2, trials_per_session=TPS).roi_columns
    overrides = [
        "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
        "--model.init_args.backbone.image_size=16", "--model.init_args.num_inference_steps=4",
        "--model.init_args.metrics={n_way: 2, num_trials: 4, resize: 32}",
        "--data.init_args.image_size=16", "--data.init_args.sessions=2", f"--data.init_args.trials_per_session={TPS}",
        "--data.init_args.val_fraction=0.2", "--data.init_args.batch_size=4",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
    ]
    main(["fit", "--config", str(ROOT / "conf" / "osaka" / "nsd.yaml"), *overrides])
    run = next((tmp_path / "runs" / "nsd_subj01").iterdir())
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert {"retrieval_brain_to_image", "image_retrieval", "pixcorr", "ssim", "two_way"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    config = (run / "config.yaml").read_text()
    assert "captions:" in config and "ridge_dtype: float32" in config
    ckpt = run / "checkpoints" / "last.ckpt"
    main(["predict", "--ckpt_path", str(ckpt), "--trainer.accelerator=cpu",
          f"--data.init_args.cache_dir={tmp_path / 'cache'}"])
    manifest = json.loads((run / "predictions" / "manifest.json").read_text())
    assert manifest["n_samples"] == len(manifest["samples"]) > 0
    hparams = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    assert (hparams["z_roi"], hparams["c_roi"]) == ("early", "ventral")
    assert hparams["roi_columns"] == cols  # linked from the datamodule, stored with the model
    model = OsakaMethod.load_from_checkpoint(ckpt)
    assert model.z_index.tolist() == cols["early"] and model.c_index.tolist() == cols["ventral"]
    assert (model.ridge_z.n_features, model.ridge_c.n_features) == (len(cols["early"]), len(cols["ventral"]))
