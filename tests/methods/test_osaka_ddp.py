"""The Osaka method under 2-process CPU DDP (gloo, Lightning's ddp_spawn) fits the same ridge as one process:
sufficient statistics are all-reduced and every training trial is seen exactly once (no sampler padding)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from brain2img.data.simulated import SimulatedDataModule
from brain2img.methods import OsakaMethod
from tests.builders.small import SMALL


def _fit(devices: int, cache_dir: str, root: Path) -> OsakaMethod:
    # 41 stimuli x 3 repeats, 80% train: an odd trial count, so a padding sampler would duplicate a trial
    data = SimulatedDataModule(n_stimuli=41, image_size=16, n_voxels=(60, 50), cache_dir=cache_dir, batch_size=8)
    torch.manual_seed(0)
    model = OsakaMethod(brain_shape=data.brain_shape, backbone={"preset": "tiny", **SMALL, "condition_dim": 1280},
                        alphas=(0.1, 1.0, 10.0), n_folds=3)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        default_root_dir=str(root))
    trainer.fit(model, data)
    return model


def test_two_process_ridge_equals_one_process(cache_dir, tmp_path):
    one = _fit(1, cache_dir, tmp_path / "one")
    two = _fit(2, cache_dir, tmp_path / "two")
    for name in ("ridge_z", "ridge_c"):
        a, b = getattr(one, name), getattr(two, name)
        assert torch.count_nonzero(a.coef_) > 0 and torch.count_nonzero(b.coef_) > 0
        scale = float(a.coef_.abs().max())  # summation order differs across ranks: compare at the coefficients' scale
        torch.testing.assert_close(b.coef_, a.coef_, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(b.alpha_, a.alpha_)
