"""DreamDiffusion conditioning heads (reference shapes and parameter counts) and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brain2img.diffusion.token_maps import TokenMapper, TokenPooler, TokenTimeCondition
from brain2img.optim import decay_groups, warmup_cosine_factor, warmup_cosine_scheduler


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_reference_heads_have_reference_sizes_and_shapes():
    mapper = TokenMapper(128, 1024, 77, 768)
    assert n_params(mapper.channel_mapper) == 13_261
    assert n_params(mapper.dim_mapper) == 787_200
    pooler = TokenPooler(128, 1024, 768)
    assert n_params(pooler) == 787_329
    time_cond = TokenTimeCondition(77, 768, 1280)
    assert n_params(time_cond) == 987_323
    x = torch.randn(2, 128, 1024)
    tokens = mapper(x)
    assert tokens.shape == (2, 77, 768)
    assert pooler(x).shape == (2, 768)
    assert time_cond(tokens).shape == (2, 1280)


def test_token_mapper_matches_numpy():
    torch.manual_seed(0)
    mapper = TokenMapper(6, 5, 3, 4)
    x = torch.randn(2, 6, 5)
    w1 = mapper.channel_mapper[0].weight[:, :, 0].detach().numpy()
    b1 = mapper.channel_mapper[0].bias.detach().numpy()
    w2 = mapper.channel_mapper[1].weight[:, :, 0].detach().numpy()
    b2 = mapper.channel_mapper[1].bias.detach().numpy()
    wd, bd = mapper.dim_mapper.weight.detach().numpy(), mapper.dim_mapper.bias.detach().numpy()
    xn = x.numpy()
    mixed = np.einsum("ol,bld->bod", w2, np.einsum("hl,bld->bhd", w1, xn) + b1[None, :, None]) + b2[None, :, None]
    expected = mixed @ wd.T + bd
    np.testing.assert_allclose(mapper(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_heads_refuse_wrong_token_shapes():
    with pytest.raises(ValueError, match=r"\(B, 128, 1024\)"):
        TokenMapper(128, 1024, 77, 768)(torch.randn(2, 64, 1024))
    with pytest.raises(ValueError, match=r"\(B, 77, 768\)"):
        TokenTimeCondition(77, 768, 1280)(torch.randn(2, 77, 64))


def test_schedule_end_points_and_shape():
    w, e, peak_ratio = 40, 500, 1.0
    assert warmup_cosine_factor(0, w, e) == 0.0
    assert warmup_cosine_factor(20, w, e) == pytest.approx(0.5)
    assert warmup_cosine_factor(w, w, e) == pytest.approx(peak_ratio)
    assert warmup_cosine_factor(e, w, e) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine_factor(e, w, e, min_ratio=0.1) == pytest.approx(0.1)
    mid = (w + e) / 2
    assert warmup_cosine_factor(int(mid), w, e) == pytest.approx(0.5 * (1 + math.cos(math.pi * (mid - w) / (e - w))))
    values = [warmup_cosine_factor(s, w, e) for s in range(w, e + 1)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = warmup_cosine_scheduler(opt, warmup_steps=2, total_steps=6)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(lrs[:3], [0.0, 1.0, 2.0])
    assert lrs[6] == pytest.approx(0.0, abs=1e-12)


def test_decay_groups_exclude_biases_norms_and_fixed():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    model.register_parameter("pos_embed", torch.nn.Parameter(torch.zeros(1, 2, 4), requires_grad=False))
    decay, no_decay = decay_groups(model.named_parameters(), 0.05)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 3  # linear bias, norm weight and bias; the frozen pos_embed is left out
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
