"""The MindEye diffusion prior's schedule, noising and samplers (diffusers schedulers), checked against Nichol &
Dhariwal's cosine formula and the DDPM / DDIM update formulas written out in NumPy (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from brain2img.diffusion import prior as prior_mod

T = 100


def _cosine_abar(t: int = T, s: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """``(betas, alphas_cumprod)``: ``abar(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2``, betas clipped at 0.999."""
    x = np.arange(t + 1) / t
    f = np.cos((x + s) / (1 + s) * np.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return betas, np.cumprod(1 - betas)


def _tiny(**overrides: object) -> prior_mod.DiffusionPrior:
    torch.manual_seed(0)
    return prior_mod.DiffusionPrior.from_config(prior_mod.prior_config("tiny", **overrides)).eval()


class _Denoiser(nn.Module):
    """Stand-in network predicting ``x0 + slope * x`` (``slope = 0``: the true ``x0``); records its inputs."""

    def __init__(self, x0: torch.Tensor, slope: float = 0.0) -> None:
        super().__init__()
        self.x0, self.slope, self.calls = x0, slope, []

    def forward(self, x, times, brain, brain_drop_prob=0.0, image_drop_prob=0.0, generator=None):  # noqa: ANN001
        self.calls.append((x.clone(), times.clone()))
        return self.x0 + self.slope * x


def _schedule(n: int) -> list[int]:
    return [int(v) for v in np.round(np.linspace(T - 1, 0, n))]


def test_schedule_is_the_cosine_formula_and_holds_no_state() -> None:
    prior = _tiny()
    betas, abar = _cosine_abar()
    sched = prior.noise_scheduler
    assert isinstance(sched, DDPMScheduler) and len(sched.betas) == T
    np.testing.assert_allclose(sched.betas.double().numpy(), betas, rtol=1e-6)
    assert sched.betas.max().item() == pytest.approx(0.999)  # the last beta is clipped
    np.testing.assert_allclose(sched.alphas_cumprod.double().numpy(), abar, rtol=2e-5, atol=2e-7)
    torch.testing.assert_close(prior.alphas_cumprod, sched.alphas_cumprod)
    # the schedulers hold no weights: state_dict and parameter count are the network's alone
    assert set(prior.state_dict()) == {f"net.{k}" for k in prior.net.state_dict()}
    assert sum(p.numel() for p in prior.parameters()) == sum(p.numel() for p in prior.net.parameters()) == 22_880
    fresh = _tiny()
    fresh.load_state_dict(prior.state_dict(), strict=True)


def test_training_noises_with_sqrt_abar() -> None:
    prior = _tiny(cond_drop_prob=0.0)
    gen = torch.Generator().manual_seed(0)
    brain, image = torch.randn(64, 4, 32, generator=gen), torch.randn(64, 4, 32, generator=gen) / 32**0.5
    spy = _Denoiser(torch.zeros(64, 4, 32))
    prior.net = spy
    loss = prior(brain, image, generator=torch.Generator().manual_seed(1))
    noisy, times = spy.calls[0]
    # the draws, replayed: timesteps uniform in [0, T), then the noise, from the same generator
    replay = torch.Generator().manual_seed(1)
    t_ref = torch.randint(0, T, (64,), generator=replay)
    noise = torch.randn(64, 4, 32, generator=replay).double().numpy()
    assert torch.equal(times, t_ref) and 0 <= times.min() and times.max() < T and len(times.unique()) > 30
    _, abar = _cosine_abar()
    a = abar[t_ref.numpy()][:, None, None]
    x_start = image.double().numpy() * prior.image_embed_scale
    expected = np.sqrt(a) * x_start + np.sqrt(1 - a) * noise
    np.testing.assert_allclose(noisy.double().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss.item(), np.mean(x_start**2), rtol=1e-5)  # zero prediction: loss = E[x_start^2]
    q = prior.q_sample(torch.from_numpy(x_start), t_ref, torch.from_numpy(noise))
    np.testing.assert_allclose(q.numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("num_steps", "eta"), [(None, 1.0), (10, 1.0), (7, 0.0), (3, 0.5), (1, 1.0), (1, 0.0)])
def test_sampling_with_the_true_x0_returns_x0(num_steps: int | None, eta: float) -> None:
    prior = _tiny()
    x0 = torch.randn(3, 4, 32, generator=torch.Generator().manual_seed(2)) * prior.image_embed_scale
    spy = _Denoiser(x0)
    prior.net = spy
    got = prior.sample(torch.zeros(3, 4, 32), num_steps=num_steps, eta=eta, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, x0 / prior.image_embed_scale)
    assert [int(t[0]) for _, t in spy.calls] == _schedule(num_steps or T)  # evenly spaced from T - 1 down


def test_ancestral_sampling_is_reproducible() -> None:
    prior = _tiny()
    brain = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(4))
    a = prior.sample(brain, generator=torch.Generator().manual_seed(5))
    b = prior.sample(brain, generator=torch.Generator().manual_seed(5))
    c = prior.sample(brain, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert (a - c).abs().max() > 1e-3
    d = prior.sample(brain, num_steps=10, eta=0.0, generator=torch.Generator().manual_seed(5))
    e = prior.sample(brain, num_steps=10, eta=0.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(d, e)


def _posterior(abar_t: float, abar_prev: float) -> tuple[float, float, float]:
    """``q(x_prev | x_t, x0)``: ``(coef_x0, coef_xt, variance)`` with ``beta = 1 - abar_t / abar_prev``."""
    beta = 1 - abar_t / abar_prev
    coef1 = np.sqrt(abar_prev) * beta / (1 - abar_t)
    coef2 = np.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar_t)
    return coef1, coef2, beta * (1 - abar_prev) / (1 - abar_t)


# atol: float32 alphas_cumprod near 1 leave 1 - abar with ~1e-4 relative error at t = 1
@pytest.mark.parametrize(("num_steps", "t", "t_prev", "atol"), [(T, 50, 49, 1e-6), (T, 1, 0, 5e-5), (10, 99, 88, 1e-6)])
def test_one_ddpm_step_is_the_posterior(num_steps: int, t: int, t_prev: int, atol: float) -> None:
    prior = _tiny()
    schedule = _schedule(num_steps)
    scheduler, step_t = prior._sampler(schedule, 1.0)
    assert isinstance(scheduler, DDPMScheduler) and step_t == schedule
    _, abar = _cosine_abar()
    coef1, coef2, var = _posterior(abar[t], abar[t_prev])
    if num_steps == T:  # consecutive steps: beta_t (1 - abar_{t-1}) / (1 - abar_t)
        betas, _ = _cosine_abar()
        assert var == pytest.approx(betas[t] * (1 - abar[t - 1]) / (1 - abar[t]), rel=1e-12)
    gen = torch.Generator().manual_seed(7)
    x0, xt = torch.randn(2, 4, 32, generator=gen, dtype=torch.float64), torch.randn(2, 4, 32, generator=gen,
                                                                                     dtype=torch.float64)
    mean = coef1 * x0.numpy() + coef2 * xt.numpy()
    # exact, with the noise replayed
    out = scheduler.step(x0, t, xt, generator=torch.Generator().manual_seed(8)).prev_sample
    z = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64).numpy()
    np.testing.assert_allclose(out.numpy(), mean + np.sqrt(var) * z, rtol=1e-5, atol=atol)
    # and as a distribution, over many draws
    many = scheduler.step(x0.expand(4000, -1, -1, -1), t, xt.expand(4000, -1, -1, -1),
                          generator=torch.Generator().manual_seed(9)).prev_sample.numpy()
    np.testing.assert_allclose(many.mean(0), mean, atol=5 * np.sqrt(var / 4000))
    assert many.var(0).mean() == pytest.approx(var, rel=0.02)


def test_ddim_is_respaced_onto_the_sampled_timesteps() -> None:
    prior = _tiny()
    schedule = _schedule(7)
    scheduler, step_t = prior._sampler(schedule, 0.0)
    assert isinstance(scheduler, DDIMScheduler) and step_t == list(range(6, -1, -1))
    _, abar = _cosine_abar()
    np.testing.assert_allclose(scheduler.alphas_cumprod.double().numpy(), abar[schedule[::-1]], rtol=2e-5, atol=2e-7)
    assert float(scheduler.final_alpha_cumprod) == 1.0  # the last step lands on x0


@pytest.mark.parametrize(("num_steps", "eta"), [(7, 0.0), (T, 0.0), (10, 0.5)])
def test_ddim_sampling_matches_the_update_written_in_numpy(num_steps: int, eta: float) -> None:
    prior = _tiny()
    x0 = torch.randn(2, 4, 32, generator=torch.Generator().manual_seed(10), dtype=torch.float64) * 5
    prior.net = _Denoiser(x0, slope=0.3)
    got = prior.sample(torch.zeros(2, 4, 32, dtype=torch.float64), num_steps=num_steps, eta=eta,
                       generator=torch.Generator().manual_seed(11))
    _, abar = _cosine_abar()
    draws = torch.Generator().manual_seed(11)

    def randn() -> np.ndarray:
        return torch.randn(2, 4, 32, generator=draws, dtype=torch.float64).numpy()

    x = randn()
    schedule = _schedule(num_steps)
    for t, t_prev in zip(schedule, schedule[1:] + [-1], strict=True):
        pred = x0.numpy() + 0.3 * x
        if t_prev < 0:
            x = pred
            break
        a, ap = abar[t], abar[t_prev]
        eps = (x - np.sqrt(a) * pred) / np.sqrt(1 - a)
        sigma = eta * np.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        x = np.sqrt(ap) * pred + np.sqrt(1 - ap - sigma**2) * eps + (sigma * randn() if eta > 0 else 0.0)
    np.testing.assert_allclose(got.numpy(), x / prior.image_embed_scale, rtol=1e-4, atol=1e-6)


def test_sample_argument_checks() -> None:
    prior = _tiny()
    brain = torch.zeros(1, 4, 32)
    with pytest.raises(ValueError, match="'eta' must be >= 0"):
        prior.sample(brain, eta=-0.1)
    with pytest.raises(ValueError, match="'eta' must be <= 1"):
        prior.sample(brain, eta=1.5)
    with pytest.raises(ValueError, match=r"'num_steps' must be in \[1, 100\]"):
        prior.sample(brain, num_steps=0)
