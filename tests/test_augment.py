"""random_crop_resize: DreamDiffusion's fine-tuning crop, against a direct crop + resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain2img.augment import random_crop_resize


def test_each_cropped_image_is_a_resized_window_of_the_original():
    images = torch.rand(6, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    out = random_crop_resize(images, p=1.0, fraction=0.8, generator=torch.Generator().manual_seed(1))
    assert out.shape == images.shape and not torch.equal(out, images)
    for k in range(6):  # some 16 x 16 window, resized bilinearly to 20 x 20, reproduces the output exactly
        windows = [F.interpolate(images[k : k + 1, :, t : t + 16, s : s + 16], size=(20, 20), mode="bilinear",
                                 align_corners=False)[0] for t in range(5) for s in range(5)]
        assert min(float((w - out[k]).abs().max()) for w in windows) < 1e-6


def test_probability_and_identity_cases():
    images = torch.rand(400, 1, 10, 10, generator=torch.Generator().manual_seed(2))
    out = random_crop_resize(images, p=0.5, fraction=0.8, generator=torch.Generator().manual_seed(3))
    changed = (out != images).flatten(1).any(1).float().mean()
    assert 0.42 < float(changed) < 0.58
    assert torch.equal(random_crop_resize(images, p=0.0, fraction=0.8), images)
    assert torch.equal(random_crop_resize(images, p=1.0, fraction=1.0), images)
    again = random_crop_resize(images, p=0.5, fraction=0.8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        random_crop_resize(images, p=1.5, fraction=0.8)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_crop_resize(images[0], p=0.5, fraction=0.8)
