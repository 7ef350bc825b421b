"""Under 2-process gloo DDP with DistributedSampler padding, every metric equals its single-process value."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from brain2img.metrics import (
    SSIM,
    NWayTopKAccuracy,
    PixCorr,
    ReconstructionMetrics,
    RetrievalTopK,
    TwoWayIdentification,
)
from tests.builders.small import free_port

N = 21  # odd: with 2 replicas the sampler pads rank 1 with a duplicate of sample 0
WORLD = 2


class TinyFeatures(nn.Module):
    """Deterministic stand-in for the feature net."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(48, 16, generator=gen))
        self.register_buffer("head", torch.randn(16, 60, generator=gen))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = torch.tanh(F.adaptive_avg_pool2d(images, 4).flatten(1) @ self.proj)
        return {"pooled": pooled, "logits": pooled @ self.head}


def _dataset() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    gt = torch.rand(N, 3, 20, 20, generator=gen)
    image_emb = torch.randn(N, 8, generator=gen)
    return {
        "gt": gt,
        "rec": (0.5 * gt + 0.5 * torch.rand(N, 3, 20, 20, generator=gen)).clamp(0, 1),
        "gt_feats": torch.randn(N, 10, generator=gen),
        "rec_feats": torch.randn(N, 10, generator=gen),
        "gt_logits": torch.randn(N, 60, generator=gen),
        "pred_logits": torch.randn(N, 60, generator=gen),
        "image_emb": image_emb,
        "brain_emb": image_emb + torch.randn(N, 8, generator=gen),
        "ids": torch.arange(N) * 2 + 5,
    }


def _evaluate(indices: list[int], batch: int) -> dict[str, object]:
    """Feed the samples at ``indices`` to every metric; values and per-sample scores (synced when under DDP)."""
    data = _dataset()
    metrics = {
        "two_way": (TwoWayIdentification(), ("gt_feats", "rec_feats")),
        "nway": (NWayTopKAccuracy(n_way=10, num_trials=25), ("pred_logits", "gt_logits")),
        "pixcorr": (PixCorr(resize=24), ("gt", "rec")),
        "ssim": (SSIM(resize=24), ("gt", "rec")),
        "retrieval": (RetrievalTopK(batch_size=8, num_repeats=5, seed=3), ("brain_emb", "image_emb")),
    }
    suite = ReconstructionMetrics(feature_net=TinyFeatures(), n_way=10, retrieval_batch_size=8, resize=24, n_boot=100)
    for start in range(0, len(indices), batch):
        idx = torch.tensor(indices[start : start + batch])
        for metric, keys in metrics.values():
            metric.update(*(data[k][idx] for k in keys), data["ids"][idx])
        suite.update(
            data["gt"][idx], data["rec"][idx], data["ids"][idx], data["brain_emb"][idx], data["image_emb"][idx]
        )
    out: dict[str, object] = {"suite": suite.compute(with_ci=True)}
    for name, (metric, _) in metrics.items():
        out[name] = metric.compute()
        out[f"{name}_per_sample"] = metric.per_sample()
        out[f"{name}_ids"] = metric.sample_ids()
    return out


def _assert_same(got: object, expected: object, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}.{key}")
    else:
        np.testing.assert_allclose(
            np.asarray(got, dtype=float), np.asarray(expected, dtype=float), atol=1e-9, err_msg=where
        )


def _worker(rank: int, port: int, expected: dict[str, object]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        sampler = DistributedSampler(range(N), num_replicas=WORLD, rank=rank, shuffle=False)
        indices = list(sampler)
        assert len(indices) * WORLD == N + 1  # padding duplicates one sample
        got = _evaluate(indices, batch=4)
        for key, value in expected.items():
            _assert_same(got[key], value, f"rank{rank}.{key}")
    finally:
        dist.destroy_process_group()



@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_metrics_under_ddp_equal_single_process() -> None:
    expected = _evaluate(list(range(N)), batch=5)
    assert expected["two_way_ids"].shape == (N,)
    mp.spawn(_worker, args=(free_port(), expected), nprocs=WORLD, join=True)
