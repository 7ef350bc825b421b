"""Contrastive losses: MindEye's SoftCLIP and BiMixCo and DC-MAE's InfoNCE against NumPy, the mixing itself, and
the gathered losses of two DDP ranks against the single-process loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from brain2img.losses import (
    all_gather_with_grad,
    info_nce,
    mixco,
    mixco_labels,
    mixco_nce,
    sample_beta,
    soft_clip_loss,
)
from tests.builders.small import free_port


# ----------------------------------------------------------------------------------------------------- NumPy refs
def _np_normalize(x: np.ndarray) -> np.ndarray:
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _np_soft_ce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(-(labels * _np_log_softmax(logits)).sum(axis=1).mean())


def _np_soft_clip(preds: np.ndarray, targets: np.ndarray, temp: float) -> float:
    p, t = _np_normalize(preds), _np_normalize(targets)
    logits = p @ t.T / temp
    soft = np.exp(_np_log_softmax(t @ t.T / temp))
    return 0.5 * (_np_soft_ce(logits, soft) + _np_soft_ce(logits.T, soft))


def _np_mixco_nce(preds: np.ndarray, targets: np.ndarray, temp: float, perm: np.ndarray, lam: np.ndarray) -> float:
    p, t = _np_normalize(preds), _np_normalize(targets)
    b = len(perm)
    labels = np.zeros((b, b))
    for i in range(b):
        for j in range(b):
            labels[i, j] = lam[i] * (j == i) + (1 - lam[i]) * (j == perm[i])
    logits = p @ t.T / temp
    return 0.5 * (_np_soft_ce(logits, labels) + _np_soft_ce(logits.T, labels.T))



# ----------------------------------------------------------------------------------------------------- losses
def test_soft_clip_loss_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    preds, targets = torch.randn(6, 3, 5, generator=gen), torch.randn(6, 3, 5, generator=gen)
    for temp in (0.05, 0.5):
        got = soft_clip_loss(preds, targets, temp)
        np.testing.assert_allclose(got.item(), _np_soft_clip(preds.numpy(), targets.numpy(), temp), rtol=1e-5)


def test_soft_clip_loss_of_identical_well_separated_features_is_near_zero() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 512, generator=gen)
    assert soft_clip_loss(x, x.clone(), temp=0.004).item() < 1e-4
    assert soft_clip_loss(x, torch.randn(8, 512, generator=gen), temp=0.004).item() > 1.0


def test_mixco_nce_matches_numpy_with_a_fixed_point() -> None:
    gen = torch.Generator().manual_seed(2)
    preds, targets = torch.randn(5, 2, 7, generator=gen), torch.randn(5, 2, 7, generator=gen)
    perm = torch.tensor([3, 1, 0, 4, 2])  # perm[1] == 1: a sample mixed with itself
    betas = torch.tensor([0.3, 0.8, 1.0, 0.05, 0.6])
    got = mixco_nce(preds, targets, 0.006, perm, betas)
    expected = _np_mixco_nce(preds.numpy(), targets.numpy(), 0.006, perm.numpy(), betas.numpy())
    np.testing.assert_allclose(got.item(), expected, rtol=1e-5)
    labels = mixco_labels(perm, betas)
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(5))
    assert labels[1, 1] == 1.0  # not the reference's overwritten 1 - lambda


def test_mixco_without_selection_is_identity_and_nce_is_hard_infonce() -> None:
    gen = torch.Generator().manual_seed(3)
    voxels = torch.randn(6, 11, generator=gen)
    mixed, perm, betas, select = mixco(voxels, s_thresh=0.0, generator=gen)
    assert torch.equal(mixed, voxels) and not select.any() and torch.equal(betas, torch.ones(6))
    preds, targets = torch.randn(6, 9, generator=gen), torch.randn(6, 9, generator=gen)
    got = mixco_nce(preds, targets, 0.1, perm, betas, select)
    hard = _np_mixco_nce(preds.numpy(), targets.numpy(), 0.1, np.arange(6), np.ones(6))
    np.testing.assert_allclose(got.item(), hard, rtol=1e-5)
    np.testing.assert_allclose(mixco_nce(preds, targets, 0.1).item(), hard, rtol=1e-5)


def test_mixco_mixes_selected_samples_without_touching_the_input() -> None:
    voxels = torch.randn(64, 4, 3, generator=torch.Generator().manual_seed(4))
    original = voxels.clone()
    mixed, perm, betas, select = mixco(voxels, generator=torch.Generator().manual_seed(5))
    assert torch.equal(voxels, original)
    assert sorted(perm.tolist()) == list(range(64))
    assert 10 < int(select.sum()) < 54  # ~Binomial(64, 0.5)
    lam = betas[:, None, None]
    torch.testing.assert_close(mixed, lam * voxels + (1 - lam) * voxels[perm])
    assert torch.all(betas[~select] == 1) and torch.all((betas[select] >= 0) & (betas[select] <= 1))
    again = mixco(voxels, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(again, (mixed, perm, betas, select), strict=True))
    _, _, _, select_all = mixco(voxels, s_thresh=1.0, generator=torch.Generator().manual_seed(6))
    assert select_all.all()


@pytest.mark.parametrize("a, b", [(0.15, 0.15), (2.0, 5.0)])
def test_sample_beta_follows_the_beta_distribution(a: float, b: float) -> None:
    from scipy import stats

    draws = sample_beta(20000, a, b, generator=torch.Generator().manual_seed(7))
    assert draws.dtype == torch.float64 and draws.shape == (20000,)
    assert stats.kstest(draws.numpy(), stats.beta(a, b).cdf).pvalue > 1e-3


def test_losses_reject_bad_input() -> None:
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="same shape"):
        soft_clip_loss(x, torch.randn(4, 5), 0.1)
    with pytest.raises(ValueError, match="temp"):
        mixco_nce(x, x, 0.0)
    with pytest.raises(ValueError, match="together"):
        mixco_nce(x, x, 0.1, perm=torch.arange(4))
    with pytest.raises(ValueError, match="perm"):
        mixco_nce(x, x, 0.1, perm=torch.arange(3), betas=torch.ones(3))
    with pytest.raises(ValueError, match="s_thresh"):
        mixco(x, s_thresh=1.5)


def test_gather_is_identity_without_a_process_group() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert all_gather_with_grad(x) is x
    gen = torch.Generator().manual_seed(8)
    p, t = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    assert soft_clip_loss(p, t, 0.1, gather=True).item() == soft_clip_loss(p, t, 0.1).item()


# ------------------------------------------------------------------------------------------------ losses, DDP
WORLD = 2
LOCAL_B = 4


def _ddp_data() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(9)
    n = WORLD * LOCAL_B
    local_perms = [torch.randperm(LOCAL_B, generator=gen) for _ in range(WORLD)]
    return {
        "preds": torch.randn(n, 3, 5, generator=gen),
        "targets": torch.randn(n, 3, 5, generator=gen),
        "betas": torch.rand(n, generator=gen),
        # each rank permutes its own batch: globally a block-diagonal permutation
        "perm": torch.cat([p + r * LOCAL_B for r, p in enumerate(local_perms)]),
        "local_perm": torch.stack(local_perms),
    }


def _losses_and_grads(preds: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor, betas: torch.Tensor,
                      gather: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("soft_clip", "mixco_nce", "info_nce"):
        p = preds.clone().requires_grad_(True)
        t = targets.clone().requires_grad_(True)
        if name == "soft_clip":
            loss = soft_clip_loss(p, t, 0.05, gather=gather)
        elif name == "info_nce":
            loss = info_nce(p, t, 0.1, gather=gather)
        else:
            loss = mixco_nce(p, t, 0.05, perm, betas, gather=gather)
        loss.backward()
        out[name] = loss.detach()
        out[f"{name}_grad_p"], out[f"{name}_grad_t"] = p.grad, t.grad
    return out


def _ddp_worker(rank: int, port: int, expected: dict[str, torch.Tensor]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        data = _ddp_data()
        rows = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        got = _losses_and_grads(data["preds"][rows], data["targets"][rows], data["local_perm"][rank],
                                data["betas"][rows], gather=True)
        for name in ("soft_clip", "mixco_nce", "info_nce"):
            losses = [torch.zeros(()) for _ in range(WORLD)]
            dist.all_gather(losses, got[name])
            # the mean of the rank losses is the loss of the concatenated batch
            torch.testing.assert_close(torch.stack(losses).mean(), expected[name], rtol=1e-5, atol=1e-6)
            for key in ("grad_p", "grad_t"):
                # each rank holds world_size x the global gradient of its rows; DDP's averaging removes the factor
                torch.testing.assert_close(got[f"{name}_{key}"] / WORLD, expected[f"{name}_{key}"][rows],
                                           rtol=1e-4, atol=1e-6)
        local = _losses_and_grads(data["preds"][rows], data["targets"][rows], data["local_perm"][rank],
                                  data["betas"][rows], gather=False)
        for name in ("soft_clip", "info_nce"):  # without gathering: local negatives only
            assert not torch.allclose(local[name], got[name])
        with pytest.raises(ValueError, match="same shape"):
            all_gather_with_grad(torch.zeros(2 + rank, 3))
        dist.barrier()  # both ranks leave their collectives before the group is torn down
    finally:
        dist.destroy_process_group()



@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_gathered_losses_on_two_ranks_equal_the_single_process_loss() -> None:
    data = _ddp_data()
    expected = _losses_and_grads(data["preds"], data["targets"], data["perm"], data["betas"], gather=False)
    np.testing.assert_allclose(
        expected["soft_clip"].item(), _np_soft_clip(data["preds"].numpy(), data["targets"].numpy(), 0.05), rtol=1e-5
    )
    mp.spawn(_ddp_worker, args=(free_port(), expected), nprocs=WORLD, join=True)
