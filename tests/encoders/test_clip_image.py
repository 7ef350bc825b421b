"""Image encoders in the CLIP role: a local transformers CLIP vision tower, and the offline default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brain2img.encoders.clip_image import CLIP_MEAN, CLIP_STD, build_image_encoder


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=16)
    model = CLIPVisionModelWithProjection(cfg).eval()
    folder = tmp_path_factory.mktemp("clip")
    model.save_pretrained(folder)
    return model, folder


def test_hf_clip_embeds_like_the_model(clip_folder):
    model, folder = clip_folder
    encoder = build_image_encoder("hf_clip", str(folder))
    assert encoder.embed_dim == 16
    images = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    out = encoder(images)["pooled"]
    x = F.interpolate(images, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    x = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(out, model(pixel_values=x).image_embeds)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_image_encoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.image_encoder.path"):
        build_image_encoder("hf_clip")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        build_image_encoder("hf_clip", str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="unknown image encoder kind"):
        build_image_encoder("clip")


def test_default_is_offline_efficientnet():
    encoder = build_image_encoder()
    assert encoder.embed_dim == 1280
    assert encoder(torch.rand(1, 3, 32, 32))["pooled"].shape == (1, 1280)


def test_hf_clip_tokens_are_projected_hidden_states_cls_normalised(clip_folder):
    from brain2img.encoders.image_tokens import build_token_encoder

    model, folder = clip_folder
    encoder = build_token_encoder("hf_clip", str(folder))
    assert (encoder.num_tokens, encoder.dim) == (17, 16)  # (32 / 8)^2 patches + CLS, projection 16
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    tokens = encoder(images)
    x = (images - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=x).last_hidden_state
        expected = model.visual_projection(model.vision_model.post_layernorm(hidden))
        # the CLS token, projected, is the model's own image embedding
        torch.testing.assert_close(expected[:, 0], model(pixel_values=x).image_embeds)
    expected = expected / expected[:, :1].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(tokens, expected, atol=1e-5, rtol=1e-4)
