"""Backbone presets: Stable Diffusion from a local diffusers folder, the tiny generator's training and cache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import UNet2DConditionModel

import brain2img.diffusion.generator as generator_mod
from brain2img.diffusion.generator import cache_key, load_or_train_generator, train_generator
from brain2img.diffusion.presets import build_backbone
from brain2img.diffusion.simulated import TinySimulatedBackbone
from tests.builders.sd import write_sd_folder
from tests.builders.small import SMALL

TINY_RUN = {
    **SMALL,
    "vae_steps": 4,
    "vae_batch_size": 4,
    "vae_crop": 8,
    "unet_steps": 4,
    "unet_batch_size": 4,
    "warmup_steps": 1,
}


def _data(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 16, 16, generator=gen), torch.randn(n, 12, generator=gen)


# ---------------------------------------------------------------------- sd
@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    """A tiny Stable-Diffusion-layout folder written with save_pretrained (SD's PNDM scheduler config)."""
    return write_sd_folder(tmp_path_factory.mktemp("sd"))


def test_sd_preset_loads_local_folder(sd_folder):
    from transformers import CLIPTextModel

    model = build_backbone("sd", path=str(sd_folder), image_size=16)
    assert model.condition_dim == 77 * 32 and model.latent_shape == (4, 8, 8)
    unet = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    ours = model.unet.state_dict()
    assert all(torch.equal(v, ours[k]) for k, v in unet.state_dict().items())
    # null tokens = the text encoder's embedding of "" = [BOS, EOS, pad...] ids, computed here independently
    ids = torch.tensor([[0] + [1] * 76])
    with torch.no_grad():
        ref = CLIPTextModel.from_pretrained(sd_folder, subfolder="text_encoder")(ids)[0]
    torch.testing.assert_close(model.null_tokens(1), ref)
    c = torch.randn(2, 77 * 32)
    tokens = model.condition(c)
    assert torch.equal(tokens, c.view(2, 77, 32))
    assert model.generate(tokens, num_inference_steps=3).shape == (2, 3, 16, 16)
    assert model.sample(tokens, num_inference_steps=3, scheduler="pndm").shape == (2, 4, 8, 8)


def test_sd_without_text_encoder_uses_zero_null(sd_folder, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(sd_folder, folder, ignore=shutil.ignore_patterns("text_encoder", "tokenizer"))
    model = build_backbone("sd", path=folder, image_size=16)
    assert torch.equal(model.null_tokens(2), torch.zeros(2, 77, 32))
    with pytest.raises(FileNotFoundError, match="uncond is 'text' but .* has no text_encoder/"):
        build_backbone("sd", path=folder, image_size=16, uncond="text")


def test_sd_null_modes(sd_folder):
    zeros = build_backbone("sd", path=sd_folder, image_size=16, uncond="zeros")
    assert torch.equal(zeros.null_tokens(1), torch.zeros(1, 77, 32))
    text = build_backbone("sd", path=sd_folder, image_size=16, uncond="text")
    assert text.null_tokens(1).abs().sum() > 0
    with pytest.raises(ValueError, match="model.backbone.uncond must be one of"):
        build_backbone("sd", path=sd_folder, image_size=16, uncond="empty")


def test_sd_missing_or_incomplete_folder_errors(sd_folder, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="model.backbone.path") as err:
        build_backbone("sd", path=missing)
    assert str(missing) in str(err.value)
    partial = tmp_path / "partial"
    shutil.copytree(sd_folder, partial, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(FileNotFoundError, match=r"'unet/'.*model\.backbone\.path") as err:
        build_backbone("sd", path=partial)
    assert str(partial) in str(err.value)
    with pytest.raises(FileNotFoundError, match="model.backbone.path"):
        build_backbone("sd")


# ---------------------------------------------------------------------- generator
def test_train_generator_sets_unit_latent_scale_and_reduces_vae_loss():
    images, features = _data(8)
    cfg = dict(TINY_RUN, vae_steps=30, vae_lr=3e-3)
    model = train_generator(images, features, cfg, progress=False)
    with torch.no_grad():
        z = model.encode_images(images)
        std = float(torch.cat([z, model.encode_images(images.flip(-1))]).std())
        assert abs(std - 1.0) < 1e-3
        untrained = build_backbone("tiny", **TINY_RUN)
        untrained.latent_scale.fill_(model.scaling_factor)
        err = float((model.decode_latents(z) - images).abs().mean())
        err0 = float((untrained.decode_latents(untrained.encode_images(images)) - images).abs().mean())
        assert err < err0
    assert model.train_stats["vae_steps"] == 30 and model.train_stats["unet_steps"] == 4


def test_train_generator_is_seeded():
    images, features = _data()
    a = train_generator(images, features, TINY_RUN, progress=False).state_dict()
    b = train_generator(images, features, TINY_RUN, progress=False).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generator_cache_reused_and_config_change_retrains(tmp_path, monkeypatch):
    images, features = _data()
    calls = []
    real = generator_mod.train_generator
    monkeypatch.setattr(generator_mod, "train_generator", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = load_or_train_generator(images, features, TINY_RUN, tmp_path, progress=False)
    second = load_or_train_generator(images, features, TINY_RUN, tmp_path, progress=False)
    assert len(calls) == 1
    s1, s2 = first.state_dict(), second.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert second.scaling_factor == first.scaling_factor
    folder = tmp_path / cache_key(images, TINY_RUN)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pt"]  # no temp files left
    assert json.loads((folder / "config.json").read_text())["config"]["unet_steps"] == 4
    load_or_train_generator(images, features, dict(TINY_RUN, seed=1), tmp_path, progress=False)
    assert len(calls) == 2
    load_or_train_generator(images.flip(-1), features, TINY_RUN, tmp_path, progress=False)
    assert len(calls) == 3
    assert len(list(tmp_path.iterdir())) == 3


def test_generator_cut_by_time_budget_is_used_but_not_cached(tmp_path):
    images, features = _data()
    with pytest.warns(UserWarning, match="NOT cached"):
        model = load_or_train_generator(images, features, dict(TINY_RUN, time_budget_s=1e-9), tmp_path,
                                        progress=False)
    assert model.train_stats["vae_steps"] < TINY_RUN.get("vae_steps", 400)
    assert not any(tmp_path.iterdir())


def test_generator_rejects_bad_inputs():
    images, features = _data()
    with pytest.raises(ValueError, match="image_size=16"):
        train_generator(torch.rand(6, 3, 8, 8), features, TINY_RUN)
    with pytest.raises(ValueError, match=r"\(6, 12\)"):
        train_generator(images, features[:, :5], TINY_RUN)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_generator(images * 3, features, TINY_RUN)


class _FakeDataModule:
    def __init__(self, images):
        self.images = images

    def stimulus_images(self, splits):
        """The datamodule interface: unique stimuli of the given splits and their ids (test is never asked for)."""
        parts = {"train": self.images[:4], "val": self.images[4:]}
        assert "test" not in splits
        images = torch.cat([parts[s] for s in splits])
        return images, torch.arange(len(images))


class _FakeEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 12)

    def forward(self, images):
        return {"pooled": self.proj(images.mean(dim=(2, 3)))}


def test_tiny_simulated_prepare_loads_from_cache(tmp_path):
    images, _ = _data()
    model = build_backbone("tiny_simulated", cache_dir=tmp_path, progress=False, **TINY_RUN)
    assert isinstance(model, TinySimulatedBackbone) and not model.is_trained
    model.prepare(_FakeDataModule(images), _FakeEncoder())
    assert model.is_trained and len(list(tmp_path.iterdir())) == 1
    features = torch.zeros(len(images), 12)  # the cache is keyed by images + config: these are never used
    again = build_backbone("tiny_simulated", cache_dir=tmp_path, images=images, features=features, progress=False,
                           **TINY_RUN)
    s1, s2 = model.state_dict(), again.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # cache keyed by images + config: loaded, not retrained
