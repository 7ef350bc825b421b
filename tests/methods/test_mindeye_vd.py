"""MindEye on a Versatile-Diffusion-style backbone: all CLIP image tokens (not token 0) are the UNet's context."""

from __future__ import annotations

import pytest
import torch

from brain2img.data import schema
from brain2img.encoders.image_tokens import cls_normalize
from brain2img.methods import MindEye
from tests.builders.sd import write_sd_folder

N_VOX, TOKENS, DIM = 24, 17, 16  # a 32 px CLIP with 8 px patches: 16 patch tokens + CLS, projected to 16


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("vd")
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
        projection_dim=DIM)).save_pretrained(root / "clip")
    write_sd_folder(root / "versatile", cross_attention_dim=DIM, text_encoder=False, unet="image_unet")
    return root


def _model(folders, **kw) -> MindEye:
    torch.manual_seed(0)
    backbone = {"preset": "sd", "path": str(folders / "versatile"), "image_size": 16, "n_tokens": TOKENS,
                "unet_subfolder": "image_unet", "uncond": "zeros"}
    return MindEye(brain_shape=(N_VOX,), backbone=backbone, network={"preset": "tiny", "h": 32, "n_blocks": 1,
                                                                     "proj_hidden": 32},
                   prior={"preset": "tiny", "depth": 1, "heads": 2, "dim_head": 8}, low_level=None,
                   image_encoder={"kind": "hf_clip", "path": str(folders / "clip")}, scheduler="unipc",
                   num_inference_steps=4, prior_steps=3, **kw).eval()


def test_reconstruction_attends_to_every_cls_normalised_prior_token(folders):
    model = _model(folders)
    assert model.condition_on == "tokens" and model.backbone.condition_dim == TOKENS * DIM
    brain = torch.randn(3, N_VOX, generator=torch.Generator().manual_seed(1))
    batch = {schema.BRAIN: brain, schema.IMAGE: torch.rand(3, 3, 16, 16), schema.STIMULUS_ID: torch.arange(3)}
    contexts = []
    hook = model.backbone.unet.register_forward_pre_hook(
        lambda _m, args, kwargs: contexts.append(kwargs["encoder_hidden_states"]), with_kwargs=True)
    try:
        images = model.reconstruct(batch, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images).all()
    assert len(contexts) == 4  # UniPC, 4 steps from noise (no low-level branch)
    uncond, cond = contexts[0].chunk(2)
    assert cond.shape == (3, TOKENS, DIM) and torch.equal(uncond, torch.zeros_like(uncond))
    backbone_tokens, _ = model.network(brain)
    expected = cls_normalize(model.prior.sample(backbone_tokens, num_steps=3,
                                                generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(cond, expected)
    torch.testing.assert_close(cond[:, 0].norm(dim=-1), torch.ones(3), rtol=0, atol=1e-4)


def test_backbone_width_must_match_the_tokens(folders, tmp_path):
    write_sd_folder(tmp_path / "other", cross_attention_dim=8, text_encoder=False, unet="image_unet")
    backbone = {"preset": "sd", "path": str(tmp_path / "other"), "image_size": 16, "n_tokens": TOKENS,
                "unet_subfolder": "image_unet"}
    clip = {"kind": "hf_clip", "path": str(folders / "clip")}
    with pytest.raises(ValueError, match=rf"image tokens \({TOKENS} x {DIM} values\) or on token 0"):
        MindEye(brain_shape=(N_VOX,), backbone=backbone, image_encoder=clip)
    with pytest.raises(FileNotFoundError, match="subfolder 'unet/'"):
        MindEye(brain_shape=(N_VOX,), backbone={**backbone, "unet_subfolder": "unet"}, image_encoder=clip)
