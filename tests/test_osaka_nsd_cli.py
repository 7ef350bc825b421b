"""The Osaka NSD config end to end on tiny files in the NSD formats: ROI columns fragment, c from COCO captions via
the SD folder's text encoder, fit (closed form), test metrics, and predict from the checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from brain2img.cli import main
from brain2img.data.nsd import write_roi_columns_config

sys.path.insert(0, str(Path(__file__).parent))
from test_data_nsd import N_IMG, TPS, build, stimuli  # noqa: E402, F401  (stimuli: fixture)
from test_nsd_captions import write_nsd_captions  # noqa: E402
from tiny_sd import write_sd_folder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_osaka_nsd_config_fits_on_captions_and_predicts(tmp_path, stimuli, monkeypatch):  # noqa: F811
    nsd, sd = tmp_path / "nsd", tmp_path / "sd"
    build(nsd, stimuli)
    write_nsd_captions(nsd, rows=N_IMG)
    write_sd_folder(sd)
    monkeypatch.setenv("NSD_ROOT", str(nsd))
    monkeypatch.setenv("SD14_PATH", str(sd))
    data_kw = {"root": str(nsd), "subject": 1, "roi": ["early", "ventral"], "sessions": 2, "trials_per_session": TPS}
    cols = write_roi_columns_config(tmp_path / "cols.yaml", "early", "ventral", **data_kw)
    overrides = [
        "--trainer.accelerator=cpu", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        "--trainer.enable_progress_bar=false",
        "--model.init_args.backbone.image_size=16", "--model.init_args.num_inference_steps=4",
        "--model.init_args.metrics={n_way: 2, num_trials: 4, resize: 32}",
        "--data.init_args.image_size=16", "--data.init_args.sessions=2", f"--data.init_args.trials_per_session={TPS}",
        "--data.init_args.val_fraction=0.2", "--data.init_args.batch_size=4",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
    ]
    main(["fit", "--config", str(ROOT / "conf" / "osaka" / "nsd.yaml"), "--config", str(tmp_path / "cols.yaml"),
          *overrides])
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
    assert len(cols["model"]["init_args"]["z_columns"]) + len(cols["model"]["init_args"]["c_columns"]) > 0
