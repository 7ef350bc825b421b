"""DreamDiffusion stage A (masked signal modelling) and stage B (conditioning the backbone) on tiny parts."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from brain2img.data import schema
from brain2img.diffusion.token_maps import TokenTimeCondition
from brain2img.encoders.mae1d import SignalEncoder
from brain2img.methods import DreamDiffusion, MaskedSignalPretraining
from brain2img.methods.dreamdiffusion import clip_alignment_loss
from brain2img.methods.eeg_pretrain import ENCODER_PREFIX
from brain2img.weights import load_by_prefix
from tests.builders.small import SMALL

SHAPE = (8, 32)  # (channels, times): 8 tokens with patch 4
ENCODER = {"preset": "tiny", "embed_dim": 32, "depth": 1, "num_heads": 2, "decoder_embed_dim": 16,
           "decoder_depth": 1, "decoder_num_heads": 2}


def _dd(**kwargs) -> DreamDiffusion:
    torch.manual_seed(0)
    args = {"brain_shape": SHAPE, "backbone": {"preset": "tiny", **SMALL}, "encoder": ENCODER,
            "num_inference_steps": 2, "scheduler": "ddim", "linear_probe": False}
    return DreamDiffusion(**{**args, **kwargs})


def _batch(n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {schema.BRAIN: torch.randn(n, *SHAPE, generator=g), schema.IMAGE: torch.rand(n, 3, 16, 16, generator=g),
            schema.STIMULUS_ID: torch.arange(n) + 100 * seed, schema.LABEL: torch.arange(n) % 2,
            schema.INDEX: torch.arange(n), schema.SUBJECT: torch.zeros(n, dtype=torch.long)}


def test_clip_alignment_loss_values():
    v = torch.tensor([[1.0, 2.0, 3.0]])
    assert clip_alignment_loss(v, 5 * v).item() == pytest.approx(0.0, abs=1e-6)
    assert clip_alignment_loss(v, -v).item() == pytest.approx(2.0)
    assert clip_alignment_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])).item() == pytest.approx(1.0)


def test_paper_trainable_groups_are_exact():
    model = _dd()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert model.n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert any(n.startswith("encoder.blocks") for n in trainable)
    assert any(n.startswith("cond_stage.") for n in trainable) and any("clip_projection" in n for n in trainable)
    assert not any(n.startswith(("backbone.vae", "image_encoder", "backbone.conditioner")) for n in trainable)
    unet = {n[len("backbone.unet."):] for n in trainable if n.startswith("backbone.unet.")}
    assert unet and all(".attn2." in n or ".norm2." in n or n.startswith("class_embedding.") for n in unet)
    assert any(".attn2." in n for n in unet) and any(n.startswith("class_embedding.") for n in unet)
    assert "encoder.pos_embed" not in trainable  # the fixed sin-cos table never trains
    with pytest.raises(ValueError, match="unknown trainable group"):
        _dd(trainable=["encoder", "unet_attn"])


def test_only_trainable_parameters_change():
    model = _dd()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model.losses(_batch())["loss"]
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if changed:
            assert p.requires_grad, f"frozen parameter {n} changed"
    assert not torch.equal(before["encoder.blocks.0.attn.qkv.weight"], model.encoder.blocks[0].attn.qkv.weight)


def test_time_condition_added_when_unet_has_none():
    model = _dd(backbone={"preset": "tiny", **SMALL, "unet_pooled_embedding": False})
    assert isinstance(model.backbone.unet.class_embedding, TokenTimeCondition)
    hidden = model.encoder(_batch()[schema.BRAIN])
    tokens = model.condition_tokens(hidden)
    assert tokens.shape == (4, SMALL["n_tokens"], SMALL["cross_attention_dim"])
    x, t = torch.randn(4, *model.backbone.latent_shape), torch.full((4,), 500)
    out = model.backbone._unet(x, t, tokens)
    with torch.no_grad():
        model.backbone.unet.class_embedding.proj.bias.add_(1.0)  # the time condition reaches the UNet
    assert not torch.allclose(out, model.backbone._unet(x, t, tokens))


def test_fit_learns_alignment_and_reconstructs():
    model = _dd(lr=3e-3)
    batch = _batch(8)
    opt = model.configure_optimizers()
    first = model.losses(batch)["clip"].item()
    for _ in range(30):
        opt.zero_grad()
        model.losses(batch)["loss"].backward()
        opt.step()
    assert model.losses(batch)["clip"].item() < 0.5 * first
    model.eval()
    images = model.reconstruct(batch, torch.Generator().manual_seed(0))
    again = model.reconstruct(batch, torch.Generator().manual_seed(0))
    assert images.shape == (8, 3, 16, 16) and torch.equal(images, again)
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_best_of_k_picks_the_most_similar_sample():
    model = _dd(num_samples=3, select="best_clip").eval()
    batch = _batch(2)
    latents = [torch.randn(2, *model.backbone.latent_shape, generator=torch.Generator().manual_seed(k))
               for k in range(3)]
    calls = iter(latents)
    model.backbone.sample = lambda *a, **k: next(calls)
    chosen = model.reconstruct(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = model.clip_projection(model.encoder(batch[schema.BRAIN]))
        samples = [model.backbone.decode_latents(z) for z in latents]
        sims = np.stack([F.cosine_similarity(model.image_encoder(s)["pooled"], target).numpy() for s in samples])
    for row in range(2):
        assert torch.equal(chosen[row], samples[int(sims[:, row].argmax())][row])


def test_bad_eeg_is_refused():
    model = _dd()
    bad = _batch()
    bad[schema.BRAIN] = torch.randn(4, 7, 32)
    with pytest.raises(ValueError, match=r"shape \(8, 32\) \(\(channels, times\)\).*\(7, 32\)"):
        model.embed(bad)
    nan = _batch()
    nan[schema.BRAIN][2, 0, 5] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf.*\[2\]"):
        model.embed(nan)


def _pretrain_ckpt(tmp_path: Path, shape=SHAPE) -> Path:
    torch.manual_seed(0)
    pre = MaskedSignalPretraining(brain_shape=shape, encoder=ENCODER)
    data = torch.utils.data.DataLoader([{schema.BRAIN: torch.randn(*shape)} for _ in range(16)], batch_size=8)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(pre, data)
    path = tmp_path / "pre.ckpt"
    trainer.save_checkpoint(path)
    return path


def _load_encoder(path, config) -> SignalEncoder:
    """The pre-trained encoder as DreamDiffusion loads it (``setup`` at fit start)."""
    encoder = SignalEncoder(config)
    load_by_prefix(encoder, path, ENCODER_PREFIX, f"a pre-trained EEG encoder for {config.n_channels} channels",
                   ignore_missing=("mask_token",))
    return encoder


def test_pretrained_encoder_round_trip_and_errors(tmp_path):
    path = _pretrain_ckpt(tmp_path)
    pre = MaskedSignalPretraining.load_from_checkpoint(path)
    model = _dd(encoder_checkpoint=str(path))
    encoder = _load_encoder(path, model.encoder_config)
    x = torch.randn(2, *SHAPE)
    pre.eval()
    encoder.eval()
    assert torch.equal(encoder(x), pre.mae.encoder(x))
    with pytest.raises(ValueError, match=r"pre\.ckpt' \(a pre-trained EEG encoder for 16 channels; saved with "
                                         r"brain_shape .*\) does not fit SignalEncoder: .*patch_embed"):
        _load_encoder(path, _dd(brain_shape=(16, 32)).encoder_config)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        _load_encoder(tmp_path / "missing.ckpt", model.encoder_config)
    torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"other\.ckpt' has no 'mae\.encoder\.\*' weights"):
        _load_encoder(tmp_path / "other.ckpt", model.encoder_config)
    torch.save({"state_dict": {**pre.state_dict(), "mae.encoder.extra": torch.zeros(1)}}, tmp_path / "extra.ckpt")
    with pytest.raises(ValueError, match=r"unexpected extra"):
        _load_encoder(tmp_path / "extra.ckpt", model.encoder_config)


def test_pretraining_loss_falls_on_structured_eeg():
    """The module's own optimiser and schedule, through a Trainer, lower the masked loss on held-out windows."""
    torch.manual_seed(0)
    t = torch.arange(SHAPE[1]) / 32.0
    sources = torch.stack([torch.sin(2 * torch.pi * (3 + k) * t + k) for k in range(3)])  # (3, T)
    mix = torch.randn(3, SHAPE[0], 3) / 3**0.5  # 3 "subjects" (mixing matrices)

    def windows(n: int) -> torch.Tensor:
        gains = torch.randn(n, 3, 1)
        return torch.einsum("nck,nkt->nct", mix[torch.arange(n) % 3], gains * sources) + 0.05 * torch.randn(n, *SHAPE)

    train = torch.utils.data.DataLoader([{schema.BRAIN: w} for w in windows(128)], batch_size=16, shuffle=True)
    held_out = windows(32)
    model = MaskedSignalPretraining(brain_shape=SHAPE, encoder=ENCODER, lr=3e-3, warmup_fraction=0.05)

    def val_loss() -> float:
        with torch.no_grad():
            return model.eval().mae(held_out, generator=torch.Generator().manual_seed(0))[0].item()

    before = val_loss()
    L.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model, train)
    assert val_loss() < 0.5 * before


def test_pretraining_refuses_bad_windows():
    model = MaskedSignalPretraining(brain_shape=SHAPE, encoder=ENCODER)
    with pytest.raises(ValueError, match=r"MaskedSignalPretraining.*\(8, 32\).*\(8, 30\)"):
        model.training_step({schema.BRAIN: torch.randn(2, 8, 30)}, 0)
    nan = torch.randn(2, *SHAPE)
    nan[1, 3, 4] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or Inf.*\[1\]"):
        model.training_step({schema.BRAIN: nan}, 0)


def test_training_crops_the_diffusion_images_not_the_clip_target():
    model = _dd(crop_p=1.0, crop_fraction=0.75)
    seen = []
    encode = model.backbone.encode_images
    model.backbone.encode_images = lambda images, *a, **k: seen.append(images.clone()) or encode(images, *a, **k)
    batch = _batch(4)
    target_before = model.image_embedding(batch).clone()
    model.train()
    model.losses(batch)
    assert not torch.equal(seen[-1], batch[schema.IMAGE])  # cropped and resized back
    assert seen[-1].shape == batch[schema.IMAGE].shape
    model.eval()
    model.losses(batch)
    assert torch.equal(seen[-1], batch[schema.IMAGE])  # validation sees the whole image
    torch.testing.assert_close(model.image_embedding(batch), target_before)
    with pytest.raises(ValueError, match="0 < fraction <= 1"):
        _dd(crop_fraction=0.0)
