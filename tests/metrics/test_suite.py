"""ReconstructionMetrics: wiring of features/logits into the metrics, keys, confidence intervals, reset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from brain2img.metrics import (
    SSIM,
    NWayTopKAccuracy,
    PixCorr,
    ReconstructionMetrics,
    RetrievalTopK,
    TwoWayIdentification,
)


class TinyFeatures(nn.Module):
    """Deterministic stand-in for the feature net: 4x4 pooled pixels through fixed random projections."""

    def __init__(self, dim: int = 16, num_classes: int = 100) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(48, dim, generator=gen))
        self.register_buffer("head", torch.randn(dim, num_classes, generator=gen))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = torch.tanh(F.adaptive_avg_pool2d(images, 4).flatten(1) @ self.proj)
        return {"pooled": pooled, "logits": pooled @ self.head}


def _data(n: int = 12, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=gen)
    rec = (0.5 * gt + 0.5 * torch.rand(n, 3, size, size, generator=gen)).clamp(0, 1)
    image_emb = torch.randn(n, 8, generator=gen)
    brain_emb = image_emb + torch.randn(n, 8, generator=gen)
    return gt, rec, brain_emb, image_emb


def test_suite_equals_individual_metrics() -> None:
    gt, rec, brain_emb, image_emb = _data()
    ids = torch.arange(12)
    suite = ReconstructionMetrics(
        feature_net=TinyFeatures(), n_way=10, num_trials=20, retrieval_batch_size=5, retrieval_num_repeats=4, resize=32
    )
    for sl in (slice(0, 5), slice(5, 12)):
        suite.update(gt[sl], rec[sl], ids[sl], brain_emb=brain_emb[sl], image_emb=image_emb[sl])
    values = suite.compute()

    net = TinyFeatures()
    f_gt, f_rec = net(gt), net(rec)
    expected = {}
    for key, metric, args in [
        ("nway_top1", NWayTopKAccuracy(n_way=10, num_trials=20), (f_rec["logits"], f_gt["logits"])),
        ("two_way", TwoWayIdentification(), (f_gt["pooled"], f_rec["pooled"])),
        ("pixcorr", PixCorr(resize=32), (gt, rec)),
        ("ssim", SSIM(resize=32), (gt, rec)),
    ]:
        metric.update(*args, ids)
        expected[key] = float(metric.compute())
    retrieval = RetrievalTopK(batch_size=5, num_repeats=4)
    retrieval.update(brain_emb, image_emb, ids)
    expected.update({f"retrieval_{k}": float(v) for k, v in retrieval.compute().items()})
    expected.update({f"retrieval_all_{k}": float(v) for k, v in retrieval.compute_all().items()})
    expected["image_retrieval"] = expected["retrieval_image_to_brain"]
    expected["brain_retrieval"] = expected["retrieval_brain_to_image"]
    assert values.keys() == expected.keys()
    for key, value in expected.items():
        assert values[key] == pytest.approx(value, abs=1e-6), key


def test_suite_ci_skip_and_reset() -> None:
    gt, rec, _, _ = _data(n=10)
    suite = ReconstructionMetrics(feature_net=TinyFeatures(), n_way=10, resize=None, n_boot=200)
    suite.update(gt, rec, torch.arange(10))
    values = suite.compute(with_ci=True)
    keys = ["nway_top1", "two_way", "pixcorr", "ssim"]
    assert set(values) == {f"{k}{s}" for k in keys for s in ("", "_ci_low", "_ci_high")}  # no retrieval data: skipped
    for key in keys:
        assert values[f"{key}_ci_low"] <= values[key] <= values[f"{key}_ci_high"]
    assert values["pixcorr_ci_low"] < values["pixcorr_ci_high"]
    suite.reset()
    assert suite.compute() == {}
    suite.update(gt[:4], gt[:4], torch.arange(4))
    assert suite.compute()["pixcorr"] == pytest.approx(1.0)


def test_suite_validates_input() -> None:
    gt, rec, brain_emb, _ = _data(n=4)
    suite = ReconstructionMetrics(feature_net=TinyFeatures(), n_way=10)
    with pytest.raises(ValueError, match="both"):
        suite.update(gt, rec, torch.arange(4), brain_emb=brain_emb)

    class Bad(nn.Module):
        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"pooled": images.mean((2, 3))}

    with pytest.raises(KeyError, match="logits"):
        ReconstructionMetrics(feature_net=Bad()).update(gt, rec, torch.arange(4))


def test_suite_end_to_end_with_efficientnet() -> None:
    """The default feature net on 4 small images: identical reconstructions are perfect on every metric."""
    pytest.importorskip("efficientnet_lite_pytorch")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    gt = torch.stack(
        [
            torch.stack([xx, yy, 1 - xx]),
            torch.stack([(torch.sin(12 * xx) + 1) / 2, yy * 0.3, xx * yy]),
            torch.stack([((xx * 8).floor() + (yy * 8).floor()) % 2, 0.5 * torch.ones_like(xx), yy]),
            torch.stack([1 - yy, (torch.cos(9 * yy) + 1) / 2, 0.2 * torch.ones_like(xx)]),
        ]
    )
    suite = ReconstructionMetrics(n_way=50, num_trials=None)
    suite.update(gt, gt.clone(), torch.arange(4))
    values = suite.compute()
    assert values == pytest.approx({"nway_top1": 1.0, "two_way": 1.0, "pixcorr": 1.0, "ssim": 1.0}, abs=1e-6)
    suite.reset()
    shuffled = gt[[1, 2, 3, 0]]
    suite.update(gt, shuffled, torch.arange(4))
    values = suite.compute()
    assert values["pixcorr"] < 0.9 and values["ssim"] < 0.9 and values["two_way"] < 1.0
    assert np.isfinite(list(values.values())).all()
