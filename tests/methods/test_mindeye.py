"""MindEye on tiny parts: image-token targets, the two contrastive phases, learning, reconstruction, the CLI config."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from brain2img.cli import main
from brain2img.data import schema
from brain2img.encoders.image_tokens import build_token_encoder, cls_normalize
from brain2img.methods import MindEye
from tests.builders.small import SMALL

ROOT = Path(__file__).resolve().parents[2]
N_VOX = 40
BACKBONE = {"preset": "tiny", **SMALL, "condition_dim": 1280}
PRIOR = {"preset": "tiny", "depth": 1, "heads": 4, "dim_head": 320, "ff_mult": 0.25}
LOW = {"preset": "tiny", "seed_side": 4, "block_out_channels": [8, 8], "norm_num_groups": 4}


def _model(**kwargs) -> MindEye:
    torch.manual_seed(0)
    args = {"brain_shape": (N_VOX,), "backbone": BACKBONE, "network": {"preset": "tiny", "drop_in": 0.0},
            "prior": PRIOR, "low_level": LOW, "image_encoder": {"grid": 1}, "num_inference_steps": 2,
            "prior_steps": 5, "max_lr": 3e-3}
    return MindEye(**{**args, **kwargs})


def _batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=g)
    # voxels: a fixed random mixture of the image pixels plus a little noise (an encoding model)
    weights = torch.randn(3 * 16 * 16, N_VOX, generator=torch.Generator().manual_seed(123)) / 28
    brain = images.flatten(1) @ weights + 0.01 * torch.randn(n, N_VOX, generator=g)
    return {schema.BRAIN: brain, schema.IMAGE: images, schema.STIMULUS_ID: torch.arange(n) + 1000 * seed,
            schema.INDEX: torch.arange(n), schema.LABEL: torch.zeros(n, dtype=torch.long),
            schema.SUBJECT: torch.zeros(n, dtype=torch.long)}


def test_token_targets_are_cls_normalised():
    tokens = cls_normalize(torch.randn(3, 5, 7) * 4)
    torch.testing.assert_close(tokens[:, 0].norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    encoder = build_token_encoder("efficientnet_lite0", grid=2)
    out = encoder(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 5, 1280)
    torch.testing.assert_close(out[:, 0].norm(dim=-1), torch.ones(2), atol=1e-4, rtol=0)
    raw = encoder.features(torch.rand(1, 3, 32, 32))
    assert raw["pooled"].shape == (1, 1280)


def test_phases_follow_the_schedule():
    model = _model(mixup_pct=0.5)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    model.trainer = trainer  # attach for epoch bookkeeping only
    model.train()
    assert model._in_bimixco()  # epoch 0 of 4 with mixup_pct 0.5: BiMixCo
    trainer.fit_loop.epoch_progress.current.completed = 2
    assert not model._in_bimixco()
    assert model._softclip_temp() == pytest.approx(0.004)
    trainer.fit_loop.epoch_progress.current.completed = 3
    assert model._softclip_temp() == pytest.approx(0.0075)


def test_training_improves_retrieval_and_reconstructs():
    model = _model()
    batch = _batch(16)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()

    def top1() -> float:
        brain, image = model.embed(batch)
        sim = torch.nn.functional.normalize(brain, dim=1) @ torch.nn.functional.normalize(image, dim=1).T
        return float((sim.argmax(1) == torch.arange(16)).float().mean())

    with torch.no_grad():
        model.eval()
        before = top1()
        model.train()
    first = None
    for _ in range(40):
        opt.zero_grad()
        out = model.losses(batch)
        first = first if first is not None else {k: float(v.detach()) for k, v in out.items() if v.ndim == 0}
        out["loss"].backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert top1() >= max(0.5, before + 0.25)
        out = model.losses(batch)
    assert float(out["low_level"]) < first["low_level"] and float(out["prior"]) < first["prior"]
    images = model.reconstruct(batch, torch.Generator().manual_seed(0))
    again = model.reconstruct(batch, torch.Generator().manual_seed(0))
    assert images.shape == (16, 3, 16, 16) and torch.equal(images, again)


def test_best_of_k_and_bad_input():
    model = _model(num_samples=2).eval()
    batch = _batch(4)
    assert model.reconstruct(batch, torch.Generator().manual_seed(0)).shape == (4, 3, 16, 16)
    bad = _batch(4)
    bad[schema.BRAIN] = torch.randn(4, N_VOX + 1)
    with pytest.raises(ValueError, match=rf"\({N_VOX},\)"):
        model.embed(bad)
    with pytest.raises(ValueError, match="token 0"):
        _model(backbone={"preset": "tiny", **SMALL, "condition_dim": 12})


def test_simulated_config_fast_dev_run(tmp_path, cache_dir):
    main(["fit", "--config", str(ROOT / "conf" / "mindeye" / "simulated.yaml"),
          "--model.init_args.backbone", json.dumps({"preset": "tiny", "condition_dim": 1280}),
          "--model.init_args.num_inference_steps=2", "--model.init_args.prior_steps=3",
          "--model.init_args.metrics", json.dumps({"n_way": 5, "num_trials": 5, "n_boot": 50}),
          "--data.init_args.n_stimuli=40", "--data.init_args.n_voxels=[60, 50]",
          f"--data.init_args.cache_dir={cache_dir}", "--trainer.fast_dev_run=true",
          f"--trainer.default_root_dir={tmp_path}"])
    metrics = json.loads((tmp_path / "metrics_test.json").read_text())
    assert {"retrieval_brain_to_image", "two_way"} <= set(metrics)


def test_validation_retrieval_scores_both_directions():
    """val/retrieval_top1 (brain -> image), its reverse and their mean, against NumPy argmax on cosine similarity."""
    import numpy as np

    model = _model()
    model.on_validation_epoch_start()
    rng = np.random.default_rng(0)
    image = rng.standard_normal((30, 6))
    brain = image + 1.3 * rng.standard_normal((30, 6)) + 1.5 * rng.standard_normal((1, 6))
    for start in (0, 17):
        stop = 17 if start == 0 else 30
        model.collect_val_embeddings(torch.from_numpy(brain[start:stop]), torch.from_numpy(image[start:stop]))
    logged = {}
    model.log = lambda name, value, **_: logged.__setitem__(name, float(value))
    model.on_validation_epoch_end()
    b = brain / np.linalg.norm(brain, axis=1, keepdims=True)
    i = image / np.linalg.norm(image, axis=1, keepdims=True)
    sim = b @ i.T
    b2i, i2b = np.mean(sim.argmax(1) == np.arange(30)), np.mean(sim.argmax(0) == np.arange(30))
    assert b2i != i2b
    assert logged["val/retrieval_top1"] == pytest.approx(b2i)
    assert logged["val/retrieval_top1_image_to_brain"] == pytest.approx(i2b)
    assert logged["val/retrieval_top1_both"] == pytest.approx((b2i + i2b) / 2)
