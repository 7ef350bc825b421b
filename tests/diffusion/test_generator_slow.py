"""A real (shortened) training of the tiny generator on photo crops: its samples must follow the condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def _photo_crops(n_per_photo: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data, transform
    from sklearn.datasets import load_sample_image

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.hubble_deep_field(),
              data.retina(), load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for k, photo in enumerate(photos):
        im = photo[..., :3].astype(np.float32) / 255
        scale = 128 / min(im.shape[:2])
        im = transform.resize(im, (round(im.shape[0] * scale), round(im.shape[1] * scale)), anti_aliasing=True)
        for _ in range(n_per_photo):
            y, x = rng.integers(0, im.shape[0] - 63), rng.integers(0, im.shape[1] - 63)
            crops.append(im[y : y + 64, x : x + 64].transpose(2, 0, 1))
            labels.append(k)
    return torch.tensor(np.stack(crops)).clamp(0, 1), torch.tensor(labels)


@pytest.mark.slow
def test_short_generator_training_follows_condition():
    from brain2img.diffusion.generator import train_generator
    from brain2img.encoders.image_features import EfficientNetLite0Features
    from brain2img.metrics.identification import two_way_scores

    train, _ = _photo_crops(16, seed=0)
    test, _ = _photo_crops(4, seed=1)
    encoder = EfficientNetLite0Features()
    f_train, f_test = encoder.encode(train)["pooled"], encoder.encode(test)["pooled"]
    model = train_generator(train, f_train, {"vae_steps": 250, "unet_steps": 500}, progress=False)
    with torch.no_grad():
        z = model.encode_images(test)
        recon = model.decode_latents(z)
        psnr = float((10 * torch.log10(1 / ((recon - test) ** 2).flatten(1).mean(1))).mean())
        tokens = model.condition(f_test)
        own = model.sample(tokens, guidance_scale=3.0, num_inference_steps=25, init_latents=z, strength=0.8,
                           generator=torch.Generator().manual_seed(0))
        wrong = model.sample(tokens.roll(5, dims=0), guidance_scale=3.0, num_inference_steps=25, init_latents=z,
                             strength=0.8, generator=torch.Generator().manual_seed(0))
    two_way_own = float(two_way_scores(f_test, encoder.encode(model.decode_latents(own))["pooled"]).mean())
    two_way_wrong = float(two_way_scores(f_test, encoder.encode(model.decode_latents(wrong))["pooled"]).mean())
    assert psnr > 18.0
    assert two_way_own > 0.65
    assert two_way_own > two_way_wrong + 0.05
