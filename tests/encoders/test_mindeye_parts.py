"""MindEye library parts: BrainNetwork / low-level branch, schedules and the diffusion prior, checked against the
reference numbers and independent NumPy computations (the losses: test_mindeye_losses.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brain2img.diffusion import prior as prior_mod
from brain2img.encoders.mindeye import (
    BrainNetwork,
    LowLevelBranch,
    low_level_config,
    mindeye_config,
)
from brain2img.schedules import bimixco_epochs, make_onecycle, onecycle_total_steps, softclip_temperatures


# --------------------------------------------------------------------------------------------------- encoders
def test_brain_network_paper_size_parameter_count_and_shapes() -> None:
    with torch.device("meta"):
        model = BrainNetwork.from_config(mindeye_config("paper"))
        backbone, projected = model(torch.empty(2, 15724))
    assert sum(p.numel() for p in model.parameters()) == 947_579_904  # MindEye1 notebook, subj01 voxel2clip
    assert backbone.shape == (2, 257, 768) and projected.shape == (2, 257, 768)
    assert model.lin1.out_features == 257 * 768
    assert model.lin0[0].in_features == 15724
    assert mindeye_config("paper", n_voxels=14278).n_voxels == 14278


def _functional_brain_network(model: BrainNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec written out with torch.nn.functional on the model's weights (eval mode: no dropout)."""
    f = nn.functional

    def lin_ln_gelu(lin: nn.Linear, ln: nn.LayerNorm, h: torch.Tensor) -> torch.Tensor:
        return f.gelu(f.layer_norm(f.linear(h, lin.weight, lin.bias), ln.normalized_shape, ln.weight, ln.bias))

    h = lin_ln_gelu(model.lin0[0], model.lin0[1], x)
    for block in model.mlp:
        h = h + lin_ln_gelu(block[0], block[1], h)
    tokens = f.linear(h, model.lin1.weight, model.lin1.bias).reshape(len(x), model.clip_tokens, model.clip_dim)
    proj = model.projector
    z = f.gelu(f.layer_norm(tokens, proj[0].normalized_shape, proj[0].weight, proj[0].bias))
    z = lin_ln_gelu(proj[2], proj[3], z)
    z = lin_ln_gelu(proj[5], proj[6], z)
    return tokens, f.linear(z, proj[8].weight, proj[8].bias)


def test_brain_network_tiny_matches_functional_spec() -> None:
    torch.manual_seed(0)
    cfg = mindeye_config("tiny", n_voxels=20, clip_tokens=3, clip_dim=8, n_blocks=2)
    model = BrainNetwork.from_config(cfg).eval()
    x = torch.randn(5, 20)
    tokens, projected = model(x)
    assert tokens.shape == (5, 3, 8) and projected.shape == (5, 3, 8)
    ref_tokens, ref_projected = _functional_brain_network(model, x)
    torch.testing.assert_close(tokens, ref_tokens)
    torch.testing.assert_close(projected, ref_projected)
    model.train()
    a, _ = model(x)
    b, _ = model(x)
    assert not torch.equal(a, b)  # dropout is active in training


def test_brain_network_rejects_bad_input() -> None:
    model = BrainNetwork.from_config(mindeye_config("tiny", n_voxels=20))
    with pytest.raises(ValueError, match="n_voxels=20"):
        model(torch.randn(2, 21))
    with pytest.raises(ValueError, match="out_dim"):
        BrainNetwork(10, out_dim=100, h=8, n_blocks=1, clip_tokens=3, clip_dim=8, proj_hidden=8)
    with pytest.raises(ValueError, match="unknown preset"):
        mindeye_config("huge")
    with pytest.raises(ValueError, match="hidden"):
        mindeye_config("tiny", hidden=3)


def test_low_level_branch_paper_shape_and_mlp_size() -> None:
    with torch.device("meta"):
        branch = LowLevelBranch.from_config(low_level_config("paper"))
        out = branch(torch.empty(2, 15724))
    assert out.shape == (2, 4, 64, 64)
    n, h = 15724, 4096
    expected_mlp = (n * h + 2 * h) + 4 * (h * h + 2 * h) + h * 64 * 16 * 16 + 2 * 64  # no biases; LN and GN affine
    got_mlp = sum(p.numel() for name, p in branch.named_parameters() if not name.startswith("upsampler."))
    assert got_mlp == expected_mlp
    mlp_linears = [m for m in (*branch.lin0, *branch.mlp.modules(), branch.lin1) if isinstance(m, nn.Linear)]
    assert len(mlp_linears) == 6 and all(m.bias is None for m in mlp_linears)


def test_low_level_branch_tiny_forward_backward_and_maps() -> None:
    torch.manual_seed(0)
    branch = LowLevelBranch(30, h=16, n_blocks=1, latent_shape=(4, 8, 8), seed_channels=8, seed_side=4,
                            block_out_channels=(8, 16), norm_num_groups=4, contrastive_dim=12)
    x = torch.randn(3, 30)
    latent, maps = branch.forward_with_maps(x)
    assert latent.shape == (3, 4, 8, 8) and maps.shape == (3, 16, 12)
    seed = branch.seed_map(x)
    assert seed.shape == (3, 8, 4, 4)
    # GroupNorm(1, C) without learned change: each sample's seed map has mean 0 and variance 1
    torch.testing.assert_close(seed.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(seed.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    nn.functional.l1_loss(branch(x), torch.zeros(3, 4, 8, 8)).backward()
    assert branch.lin0[0].weight.grad is not None and branch.lin0[0].weight.grad.abs().sum() > 0
    tiny = LowLevelBranch.from_config(low_level_config("tiny", n_voxels=30))
    assert tiny(x).shape == (3, *low_level_config("tiny").latent_shape)


def test_low_level_branch_rejects_inconsistent_shapes() -> None:
    with pytest.raises(ValueError, match="latent_shape"):
        low_level_config("tiny", latent_shape=(4, 16, 16))
    with pytest.raises(ValueError, match="norm_num_groups"):
        low_level_config("tiny", norm_num_groups=3)
    with pytest.raises(ValueError, match="unknown argument"):
        LowLevelBranch(10, h=8, n_blocks=1, latent_shape=(4, 8, 8), seed_channel=8)
    branch = LowLevelBranch.from_config(low_level_config("tiny", n_voxels=30))
    with pytest.raises(ValueError, match="n_voxels=30"):
        branch(torch.randn(2, 31))


# -------------------------------------------------------------------------------------------------- schedules
def test_schedule_reference_numbers() -> None:
    assert onecycle_total_steps() == 66_240 == 240 * 276
    assert bimixco_epochs(240, 0.33) == 79
    taus = softclip_temperatures()
    assert taus.shape == (161,)
    assert taus[0].item() == pytest.approx(0.004, abs=1e-15)
    assert taus[-1].item() == pytest.approx(0.0075, abs=1e-15)
    assert torch.all(taus[1:] > taus[:-1])
    k = np.arange(161)
    np.testing.assert_allclose(taus.numpy(), 0.0075 + (0.004 - 0.0075) / 2 * (1 + np.cos(np.pi * k / 160)), rtol=1e-12)
    assert taus[80].item() == pytest.approx((0.004 + 0.0075) / 2)
    assert softclip_temperatures(num_epochs=10, mixup_pct=0.9).tolist() == [0.004]


def test_make_onecycle_follows_mindeye_settings() -> None:
    param = nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=1.0)
    total = 2400
    sched = make_onecycle(opt, total_steps=total)
    lrs, beta1 = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        beta1.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    peak = round(2 / 240 * total) - 1  # OneCycleLR reaches max_lr at the end of the warm-up phase
    assert lrs[0] == pytest.approx(3e-4 / 25)
    assert max(lrs) == pytest.approx(3e-4) and int(np.argmax(lrs)) == peak
    assert lrs[-1] == pytest.approx(3e-4 / 25 / 1000, rel=1e-2)
    assert beta1[0] == pytest.approx(0.95) and beta1[peak] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="pct_start"):
        make_onecycle(opt, total_steps=10, pct_start=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        onecycle_total_steps(10, n_train=8, batch_size=32)


# ------------------------------------------------------------------------------------------------------ prior
def test_prior_paper_settings() -> None:
    with torch.device("meta"):
        prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("paper"))
    assert prior.image_embed_scale == pytest.approx(27.7128, abs=1e-4)
    assert prior.timesteps == 100 and prior.cond_drop_prob == 0.2 and prior.image_cond_drop_prob == 0.2
    assert len(prior.net.blocks) == 6 and prior.net.blocks[0].attn.num_heads == 12
    assert prior.net.blocks[0].attn.head_dim == 64
    assert prior.net.null_brain_embeds.shape == (257, 768)
    with pytest.raises(ValueError, match="dim_head"):
        prior_mod.prior_config("tiny", dim_head=7)


def _cosine_betas(t: int, s: float = 0.008) -> np.ndarray:
    """Nichol & Dhariwal's cosine betas in float64 NumPy, clipped at 0.999."""
    x = np.linspace(0, t, t + 1)
    f = np.cos((x / t + s) / (1 + s) * np.pi / 2) ** 2
    return np.clip(1 - (f[1:] / f[0]) / (f[:-1] / f[0]), 0, 0.999)


def test_cosine_beta_schedule_matches_numpy() -> None:
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny"))
    sched = prior.noise_scheduler  # diffusers' DDPMScheduler, float32
    assert sched.config.num_train_timesteps == 100 and sched.config.beta_schedule == "squaredcos_cap_v2"
    assert sched.config.prediction_type == "sample" and not sched.config.clip_sample
    expected = _cosine_betas(100)
    np.testing.assert_allclose(sched.betas.double().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(prior.alphas_cumprod.double().numpy(), np.cumprod(1 - expected), rtol=2e-5, atol=2e-7)


def test_prior_shapes_and_validation() -> None:
    torch.manual_seed(0)
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny"))
    brain, image = torch.randn(3, 4, 32), torch.randn(3, 4, 32)
    loss, pred = prior(brain, image, return_pred=True)
    assert loss.ndim == 0 and pred.shape == (3, 4, 32)
    prior.eval()
    assert prior.sample(brain).shape == (3, 4, 32)
    assert prior.sample(brain, num_steps=7, eta=0.0).shape == (3, 4, 32)
    with pytest.raises(ValueError, match="num_tokens=4"):
        prior(torch.randn(3, 5, 32), torch.randn(3, 5, 32))
    with pytest.raises(ValueError, match="num_steps"):
        prior.sample(brain, num_steps=101)


def test_prior_learns_a_fixed_mapping() -> None:
    torch.manual_seed(0)
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny"))
    gen = torch.Generator().manual_seed(1)
    brain = torch.randn(48, 4, 32, generator=gen)
    target = torch.tanh(brain @ (torch.randn(32, 32, generator=gen) / 32**0.5)) / 32**0.5  # ~unit scaled tokens
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = prior(brain, target, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    prior.eval()
    samples = prior.sample(brain, generator=torch.Generator().manual_seed(2))

    def mean_corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(np.mean([np.corrcoef(x, y)[0, 1] for x, y in zip(a.flatten(1), b.flatten(1), strict=True)]))

    matched, shuffled = mean_corr(samples, target), mean_corr(samples, target.roll(1, dims=0))
    assert matched > 0.2 and matched > shuffled + 0.15


def test_prior_condition_dropout_uses_the_null_embedding() -> None:
    torch.manual_seed(0)
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny", cond_drop_prob=1.0,
                                                                        image_cond_drop_prob=0.0))
    brain_a, brain_b, image = torch.randn(2, 4, 32), torch.randn(2, 4, 32), torch.randn(2, 4, 32)
    dropped = prior.net.condition(brain_a, drop_prob=1.0)
    torch.testing.assert_close(dropped, prior.net.null_brain_embeds.detach().expand(2, -1, -1))
    assert torch.equal(prior.net.condition(brain_a, drop_prob=0.0), brain_a)
    half = prior.net.condition(torch.randn(400, 4, 32), drop_prob=0.5, generator=torch.Generator().manual_seed(3))
    n_null = int((half == prior.net.null_brain_embeds.detach()).all(dim=(1, 2)).sum())
    assert 150 < n_null < 250
    prior.train()  # every brain condition dropped: the loss cannot depend on it
    loss_a = prior(brain_a, image, generator=torch.Generator().manual_seed(4))
    loss_b = prior(brain_b, image, generator=torch.Generator().manual_seed(4))
    assert loss_a.item() == loss_b.item()
    prior.eval()  # no dropout in eval mode
    loss_a = prior(brain_a, image, generator=torch.Generator().manual_seed(4))
    loss_b = prior(brain_b, image, generator=torch.Generator().manual_seed(4))
    assert loss_a.item() != loss_b.item()


class _FixedDenoiser(nn.Module):
    """Stand-in network: predicts ``cond + slope * x`` normally and ``uncond + slope * x`` when the conditions are
    dropped (the dependence on ``x`` makes the sampling trajectory matter)."""

    def __init__(self, cond: torch.Tensor, uncond: torch.Tensor, slope: float = 0.0) -> None:
        super().__init__()
        self.cond, self.uncond, self.slope = cond, uncond, slope

    def forward(self, x, times, brain, brain_drop_prob=0.0, image_drop_prob=0.0, generator=None):  # noqa: ANN001
        return (self.uncond if brain_drop_prob == 1.0 else self.cond) + self.slope * x


def test_prior_sampler_is_ddpm_ancestral_sampling() -> None:
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny", timesteps=20))
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 4, 32, generator=gen, dtype=torch.float64) * prior.image_embed_scale
    prior.net = _FixedDenoiser(x0, torch.zeros_like(x0), slope=0.3)
    brain = torch.zeros(2, 4, 32, dtype=torch.float64)
    got = prior.sample(brain, generator=torch.Generator().manual_seed(6))

    # DDPM ancestral sampling with the posterior q(x_{t-1} | x_t, x0), written from the formulas in NumPy
    betas = _cosine_betas(20)
    abar = np.cumprod(1 - betas)
    draws = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 32, generator=draws, dtype=torch.float64).numpy()
    for t in range(19, -1, -1):
        x0n = x0.numpy() + 0.3 * x
        abar_prev = abar[t - 1] if t > 0 else 1.0
        mean = (betas[t] * np.sqrt(abar_prev) / (1 - abar[t])) * x0n + (
            (1 - abar_prev) * np.sqrt(1 - betas[t]) / (1 - abar[t])
        ) * x
        if t == 0:
            x = mean
        else:
            var = betas[t] * (1 - abar_prev) / (1 - abar[t])
            x = mean + np.sqrt(var) * torch.randn(2, 4, 32, generator=draws, dtype=torch.float64).numpy()
    # the scheduler's float32 alphas_cumprod bounds the agreement
    np.testing.assert_allclose(got.numpy(), x / prior.image_embed_scale, rtol=1e-5, atol=1e-6)


def test_prior_classifier_free_guidance() -> None:
    prior = prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny"))
    cond, uncond = torch.randn(1, 4, 32), torch.randn(1, 4, 32)
    prior.net = _FixedDenoiser(cond, uncond)
    got = prior.sample(torch.zeros(1, 4, 32), num_steps=1, cond_scale=3.0)
    torch.testing.assert_close(got, (uncond + 3.0 * (cond - uncond)) / prior.image_embed_scale)
