"""Pieces of the datamodule base: repeat averaging and the unpadded distributed sampler."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from brain2img.data.arrays import ArrayDataModule
from brain2img.data.base import UnpaddedDistributedSampler, average_repeats


def test_average_repeats_matches_numpy():
    rng = np.random.default_rng(0)
    stim = rng.integers(0, 5, size=40)
    subj = rng.integers(0, 2, size=40)
    brain = rng.standard_normal((40, 3, 4)).astype(np.float32)
    means, g_stim, g_subj = average_repeats(brain, stim, subj)
    pairs = sorted({(int(a), int(b)) for a, b in zip(stim, subj, strict=True)})
    assert list(zip(g_stim.tolist(), g_subj.tolist(), strict=True)) == pairs
    for m, s, j in zip(means, g_stim, g_subj, strict=True):
        np.testing.assert_allclose(m, brain[(stim == s) & (subj == j)].mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("n", "world"), [(10, 3), (7, 2), (2, 4)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_unpadded_sampler_covers_every_sample_once(n, world, shuffle):
    data = list(range(n))
    seen = []
    for rank in range(world):
        sampler = UnpaddedDistributedSampler(data, num_replicas=world, rank=rank, shuffle=shuffle, seed=1)
        idx = list(sampler)
        assert len(idx) == len(sampler)
        seen += idx
    assert sorted(seen) == data


def test_exact_distributed_epoch_uses_unpadded_sampler(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "b.npy", rng.standard_normal((25, 6)).astype(np.float32))
    np.save(tmp_path / "i.npy", rng.integers(0, 256, (25, 16, 16, 3), dtype=np.uint8))
    dm = ArrayDataModule(str(tmp_path / "b.npy"), str(tmp_path / "i.npy"), cache_dir=str(tmp_path / "c"))
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    assert not isinstance(dm.train_dataloader().sampler, DistributedSampler)  # Lightning pads its own
    dm.exact_distributed_epoch = True
    sampler = dm.train_dataloader().sampler
    n_train = len(dm.dataset("train"))
    assert isinstance(sampler, UnpaddedDistributedSampler) and len(sampler) == n_train // 2  # rank 1 of 2
    batch_ids = torch.cat([b["index"] for b in dm.train_dataloader()])
    assert len(batch_ids) == n_train // 2 and len(set(batch_ids.tolist())) == n_train // 2
