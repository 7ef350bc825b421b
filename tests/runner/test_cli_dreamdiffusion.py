"""DreamDiffusion through the CLI: both simulated configs run (fast_dev_run), and pre-train -> fine-tune from that
checkpoint -> predict in a new process from the fine-tuned checkpoint alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from brain2img.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf" / "dreamdiffusion"
SMALL_BACKBONE = {"preset": "tiny", "image_size": 16, "vae_channels": [8, 16], "unet_channels": [16, 32],
                  "unet_attention": [False, True], "cross_attention_dim": 16, "n_tokens": 2,
                  "conditioner_hidden": 32}
ENCODER = {"preset": "tiny", "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
           "decoder_depth": 1, "decoder_num_heads": 2}


def _pretrain_args(tmp_path: Path, cache_dir: str) -> list[str]:
    return ["fit", "--config", str(CONF / "pretrain_simulated.yaml"),
            "--model.init_args.encoder", json.dumps(ENCODER),
            "--data.init_args.subjects=[0, 1]", "--data.init_args.n_stimuli=40", "--data.init_args.image_size=16",
            f"--data.init_args.cache_dir={cache_dir}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            f"--trainer.callbacks.init_args.dirpath={tmp_path / 'pre_ckpt'}"]


def _finetune_args(tmp_path: Path, cache_dir: str, encoder_checkpoint: str | None) -> list[str]:
    return ["fit", "--config", str(CONF / "finetune_simulated.yaml"),
            "--model.init_args.backbone", json.dumps(SMALL_BACKBONE),
            "--model.init_args.encoder", json.dumps(ENCODER),
            f"--model.init_args.encoder_checkpoint={encoder_checkpoint or 'null'}",
            "--model.init_args.conditioning=tokens", "--model.init_args.num_inference_steps=2",
            "--model.init_args.metrics", json.dumps({"n_way": 5, "num_trials": 5, "n_boot": 50}),
            "--data.init_args.n_stimuli=40", "--data.init_args.image_size=16",
            f"--data.init_args.cache_dir={cache_dir}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"]


# both simulated configs and the EEG-ImageNet / raw-EEG ones resolving (--print_config): tests/test_configs.py


def test_pretrain_config_fast_dev_run(tmp_path, cache_dir):
    main([*_pretrain_args(tmp_path, cache_dir), "--trainer.fast_dev_run=true",
          f"--trainer.default_root_dir={tmp_path}"])


def test_finetune_config_fast_dev_run(tmp_path, cache_dir):
    main([*_finetune_args(tmp_path, cache_dir, None), "--trainer.fast_dev_run=true",
          f"--trainer.default_root_dir={tmp_path}"])  # fast_dev_run has no logger: outputs go to the root dir
    assert (tmp_path / "metrics_test.json").is_file()


def test_pretrain_finetune_predict_round_trip(tmp_path, cache_dir):
    main([*_pretrain_args(tmp_path, cache_dir), "--trainer.max_epochs=1"])
    pre_ckpt = tmp_path / "pre_ckpt" / "last.ckpt"
    assert pre_ckpt.is_file()
    main([*_finetune_args(tmp_path, cache_dir, str(pre_ckpt)), "--trainer.max_epochs=2",
          "--trainer.check_val_every_n_epoch=1"])
    run = next((tmp_path / "runs" / "finetune_simulated").iterdir())
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert {"two_way", "retrieval_brain_to_image", "nway_top1", "linear_probe_acc"} <= set(metrics)
    ckpt = run / "checkpoints" / "last.ckpt"
    out = tmp_path / "preds"
    cmd = [sys.executable, "-m", "brain2img", "predict", "--ckpt_path", str(ckpt), "--output_dir", str(out),
           f"--data.init_args.cache_dir={cache_dir}"]
    # a new process in another folder: the pre-training checkpoint is not needed (its weights are in `ckpt`)
    pre_ckpt.unlink()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_samples"] == len(manifest["samples"]) > 0
    # EEG with another channel count than the checkpoint: a clear error naming both shapes
    bad = subprocess.run([*cmd[:-3], "--output_dir", str(tmp_path / "p2"), f"--data.init_args.cache_dir={cache_dir}",
                          "--data.init_args.n_channels=16"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode != 0
    assert "(32, 64)" in bad.stderr and "(16, 64)" in bad.stderr
