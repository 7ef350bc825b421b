"""The shared latent-diffusion backbone on the tiny preset: shapes, seeding, guidance, img2img, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from brain2img.diffusion.conditioner import Conditioner
from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.tiny import TinyConfig
from tests.builders.small import SMALL


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_backbone("tiny", **SMALL).eval()


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _cond(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 12, generator=torch.Generator().manual_seed(seed))


def test_shapes_of_encode_decode_condition_loss_sample(model):
    assert model.latent_shape == (4, 8, 8)
    assert model.condition_dim == 12
    z = model.encode_images(_images(3))
    assert z.shape == (3, 4, 8, 8)
    zs = model.encode_images(_images(3), sample=True, generator=torch.Generator().manual_seed(0))
    assert zs.shape == z.shape and not torch.equal(zs, z)
    x = model.decode_latents(torch.randn(3, 4, 8, 8) * 5)
    assert x.shape == (3, 3, 16, 16) and x.min() >= 0 and x.max() <= 1
    tokens = model.condition(_cond(3))
    assert tokens.shape == (3, 2, 16)
    assert model.null_tokens(3).shape == (3, 2, 16)
    loss = model.denoising_loss(z, tokens, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.sample(tokens, num_inference_steps=3).shape == (3, 4, 8, 8)
    assert model.generate(tokens, num_inference_steps=3).shape == (3, 3, 16, 16)
    assert model.sample(tokens, num_inference_steps=3, scheduler="pndm").shape == (3, 4, 8, 8)


def test_encode_is_scaled_posterior_mean(model):
    images = _images(2)
    with torch.no_grad():
        ref = model.vae.encode(images * 2 - 1).latent_dist.mean * model.vae.config.scaling_factor
        assert torch.allclose(model.encode_images(images), ref)


def test_same_seed_same_sample_different_seed_different(model):
    tokens, init = model.condition(_cond(2)), model.encode_images(_images(2))
    for kwargs in ({}, {"init_latents": init, "strength": 0.6}, {"eta": 1.0}):
        a = model.sample(tokens, num_inference_steps=4, generator=torch.Generator().manual_seed(3), **kwargs)
        b = model.sample(tokens, num_inference_steps=4, generator=torch.Generator().manual_seed(3), **kwargs)
        c = model.sample(tokens, num_inference_steps=4, generator=torch.Generator().manual_seed(4), **kwargs)
        assert torch.equal(a, b)
        assert (a - c).abs().mean() > 1e-3


def _reference_ddim(model, tokens, null, scale, steps, seed):
    """Plain diffusers DDIM loop with two separate UNet calls per step (no batching)."""
    sched = DDIMScheduler.from_config(model.scheduler_config)
    sched.set_timesteps(steps)
    x = torch.randn((len(tokens), *model.latent_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in sched.timesteps:
            cond = model.unet(x, t, encoder_hidden_states=tokens, class_labels=tokens.mean(1)).sample
            if scale == 1.0:
                eps = cond
            else:
                unc = model.unet(x, t, encoder_hidden_states=null, class_labels=null.mean(1)).sample
                eps = unc + scale * (cond - unc)
            x = sched.step(eps, t, x).prev_sample
    return x


def test_guidance_matches_reference_loop(model):
    tokens = model.condition(_cond(2)).detach()
    null = model.null_tokens(2).detach()
    for scale in (1.0, 4.0):
        gen = torch.Generator().manual_seed(7)
        ours = model.sample(tokens, guidance_scale=scale, num_inference_steps=5, generator=gen)
        ref = _reference_ddim(model, tokens, null, scale, 5, 7)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # guidance 1 is the plain conditional pass: the null condition plays no part
    a = model.sample(tokens, guidance_scale=1.0, num_inference_steps=3, generator=torch.Generator().manual_seed(1))
    b = model.sample(tokens, null_tokens=torch.randn(2, 2, 16), guidance_scale=1.0, num_inference_steps=3,
                     generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def _count_unet_calls(model, **kwargs) -> int:
    calls = []
    handle = model.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        model.sample(model.condition(_cond(2)), generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        handle.remove()
    return len(calls)


def test_img2img_step_count_follows_strength(model):
    init = model.encode_images(_images(2))
    assert _count_unet_calls(model, num_inference_steps=50, init_latents=init, strength=0.8) == 40
    assert _count_unet_calls(model, num_inference_steps=20, init_latents=init, strength=0.25) == 5
    assert _count_unet_calls(model, num_inference_steps=50) == 50
    assert _count_unet_calls(model, num_inference_steps=10, guidance_scale=1.0) == 10
    assert _count_unet_calls(model, num_inference_steps=10, init_latents=init, strength=0.0) == 0


def test_small_strength_stays_close_to_init(model):
    init = model.encode_images(_images(4)).detach()
    tokens = model.condition(_cond(4)).detach()

    def dist(strength: float) -> float:
        out = model.sample(tokens, num_inference_steps=50, init_latents=init, strength=strength,
                           generator=torch.Generator().manual_seed(0))
        return float((out - init).abs().mean())

    d = [dist(s) for s in (0.02, 0.1, 0.5, 1.0)]
    assert d == sorted(d)
    assert d[0] < 0.05 * d[-1]
    assert d[0] < 0.5 * float(init.std())
    assert dist(0.0) == 0.0


def test_loss_decreases_on_fixed_batch():
    model = build_backbone("tiny", **SMALL)
    z = torch.randn(8, 4, 8, 8)
    c = _cond(8)
    params = [*model.unet.parameters(), *model.conditioner.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3)

    def loss() -> torch.Tensor:
        return model.denoising_loss(z, model.condition(c), generator=torch.Generator().manual_seed(0))

    first = float(loss().detach())
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.7 * first


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("gamma", [None, 5.0])
def test_denoising_loss_matches_numpy_schedule(prediction_type, gamma):
    model = build_backbone("tiny", prediction_type=prediction_type, **SMALL)
    assert model.prediction_type == prediction_type
    z = torch.randn(4, 4, 8, 8)
    tokens = model.condition(_cond(4)).detach()
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(z.shape, generator=gen)
    t = torch.randint(0, 1000, (4,), generator=gen)
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2  # SD "scaled_linear"
    ab = torch.tensor(np.cumprod(1 - betas)[t.numpy()], dtype=torch.float32).view(-1, 1, 1, 1)
    noisy = ab.sqrt() * z + (1 - ab).sqrt() * noise
    target = noise if prediction_type == "epsilon" else ab.sqrt() * noise - (1 - ab).sqrt() * z
    with torch.no_grad():
        pred = model.unet(noisy, t, encoder_hidden_states=tokens, class_labels=tokens.mean(1)).sample
        per_sample = ((pred - target) ** 2).flatten(1).mean(1)
        snr = (ab / (1 - ab)).flatten()
        if gamma is None:
            weight = torch.ones(4)
        else:
            weight = snr.clamp(max=gamma) / (snr if prediction_type == "epsilon" else snr + 1)
        ref = (weight * per_sample).mean()
        ours = model.denoising_loss(z, tokens, generator=torch.Generator().manual_seed(5), min_snr_gamma=gamma)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_conditioner_vector_tokens_and_identity():
    lin = Conditioner((3, 5), n_tokens=4, token_dim=8)
    tokens, pooled = lin(torch.randn(2, 3, 5))
    assert tokens.shape == (2, 4, 8) and torch.allclose(pooled, tokens.mean(1))
    flat_tokens, _ = lin(torch.randn(2, 15))
    assert flat_tokens.shape == (2, 4, 8)
    ident = Conditioner((4, 8), n_tokens=4, token_dim=8, mode="identity")
    c = torch.randn(2, 32)
    assert torch.equal(ident(c)[0], c.view(2, 4, 8))
    assert ident.condition_dim == 32
    with pytest.raises(ValueError, match=r"\(B, 3, 5\) or \(B, 15\)"):
        lin(torch.randn(2, 7))
    with pytest.raises(ValueError, match="n_tokens"):
        Conditioner((10,), n_tokens=4, token_dim=8, mode="identity")


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="image_size"):
        model.encode_images(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="condition"):
        model.sample(torch.randn(2, 5, 16), num_inference_steps=2)
    with pytest.raises(ValueError, match="strength"):
        model.sample(model.condition(_cond(1)), init_latents=torch.zeros(1, 4, 8, 8), strength=1.5)
    with pytest.raises(TypeError, match="unet_chanels"):
        build_backbone("tiny", unet_chanels=(8,))
    with pytest.raises(ValueError, match="preset"):
        build_backbone("huge")
    with pytest.raises(ValueError, match="unet_attention"):
        TinyConfig(unet_attention=(True,))


def test_tiny_build_is_fast_and_seeded():
    import time

    start = time.perf_counter()
    a = build_backbone("tiny")
    assert time.perf_counter() - start < 1.0
    b = build_backbone("tiny")
    c = build_backbone("tiny", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 1)
    assert a.latent_shape == (4, 16, 16) and a.condition_dim == 1280


def test_unipc_is_closer_to_the_converged_ode_solution_than_ddim(model):
    """UniPC (MindEye1's sampler) is a higher-order solver of the same ODE as deterministic DDIM: at 20 steps it must
    land nearer a 500-step DDIM solution than 20-step DDIM does, for txt2img and for img2img at strength 0.85."""
    tokens = model.condition(_cond(4)).detach()
    init = model.encode_images(_images(4)).detach()

    def run(name: str, steps: int, **kw) -> torch.Tensor:
        return model.sample(tokens, num_inference_steps=steps, scheduler=name, guidance_scale=1.0,
                            generator=torch.Generator().manual_seed(0), **kw)

    for kw in ({}, {"init_latents": init, "strength": 0.85}):
        ref = run("ddim", 500, **kw)
        err = {name: float((run(name, 20, **kw) - ref).norm() / ref.norm()) for name in ("ddim", "unipc")}
        assert err["unipc"] < 0.5 * err["ddim"], err
    calls = _count_unet_calls(model, num_inference_steps=20, init_latents=init[:2], strength=0.85, scheduler="unipc")
    assert calls == 17  # int(20 x 0.85), as the reference's img2img start
