"""The brain2img CLI: fit -> checkpoint -> predict round trip in a new process, bad input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brain2img.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _tiny_args(tmp_path: Path, cache_dir: str) -> list[str]:
    """Quick-start config shrunk: tiny random backbone, 40 stimuli, few steps."""
    return [
        "--config", str(ROOT / "conf" / "quickstart.yaml"),
        "--model.init_args.backbone", json.dumps({"preset": "tiny"}),
        "--model.init_args.num_inference_steps=2",
        "--model.init_args.metrics", json.dumps({"n_way": 5, "num_trials": 5, "n_boot": 50}),
        "--data.init_args.n_stimuli=40",
        "--data.init_args.n_voxels=[60, 50]",
        f"--data.init_args.cache_dir={cache_dir}",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
    ]


# every config under conf/ resolving (--print_config): tests/test_configs.py


def test_unknown_config_key_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(ROOT / "conf" / "quickstart.yaml"), "--model.init_args.strenght=0.5"])
    assert exc.value.code != 0
    assert "strenght" in capsys.readouterr().err


def test_fit_checkpoint_predict_round_trip(tmp_path, cache_dir):
    main(["fit", *_tiny_args(tmp_path, cache_dir)])
    run = next((tmp_path / "runs" / "quickstart").iterdir())
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert {"two_way", "retrieval_brain_to_image", "pixcorr", "ssim", "nway_top1"} <= set(metrics)
    assert (run / "test_reconstructions.png").is_file() and (run / "config.yaml").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"
    out = run / "predictions"  # the default: beside the checkpoint's run, nothing in the working directory
    # a new process, the checkpoint alone (plus where the data cache is, to stay fast)
    cmd = [sys.executable, "-m", "brain2img", "predict", "--ckpt_path", str(ckpt),
           f"--data.init_args.cache_dir={cache_dir}"]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(workdir.iterdir()) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_samples"] == len(manifest["samples"]) > 0
    first = manifest["samples"][0]
    assert (out / first["reconstruction"]).is_file() and (out / first["embedding"]).is_file()

    # the same checkpoint with data of another voxel count: a clear error naming both shapes
    bad = subprocess.run([*cmd, "--output_dir", str(tmp_path / "p2"), "--data.init_args.subject=1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode != 0
    assert "(60,)" in bad.stderr and "(50,)" in bad.stderr


def test_missing_sd_weights_folder_is_named(tmp_path, cache_dir):
    args = _tiny_args(tmp_path, cache_dir)
    args[args.index("--model.init_args.backbone") + 1] = json.dumps({"preset": "sd", "path": str(tmp_path / "nope")})
    with pytest.raises((FileNotFoundError, ValueError), match="nope. not found: set model.backbone.path"):
        main(["fit", *args])


@pytest.mark.parametrize("logger", ["wandb", "tensorboard"])
def test_logger_configs_write_offline(logger, tmp_path, cache_dir, monkeypatch):
    """W&B (offline, no account) and TensorBoard by config: the run logs its metrics and the reconstruction grid."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    args = _tiny_args(tmp_path, cache_dir)
    main(["fit", *args, "--config", str(ROOT / "conf" / "logger" / f"{logger}.yaml"),
          f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    if logger == "wandb":
        import wandb

        wandb.finish()  # what the end of a CLI process does
        runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
        records = list(runs[0].glob("run-*.wandb")) if len(runs) == 1 else []
        assert records and b"test/two_way" in records[0].read_bytes()  # the offline run holds the test metrics
        assert list((runs[0] / "files" / "media").rglob("*.png"))  # the reconstruction grid
    else:
        events = list((tmp_path / "runs" / "brain2img").rglob("events.out.tfevents.*"))
        assert events
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        tags = set()
        for path in events:
            acc = EventAccumulator(str(path))
            acc.Reload()
            tags |= set(acc.Tags()["scalars"]) | set(acc.Tags()["images"])
        assert "test/two_way" in tags
