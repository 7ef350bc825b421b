"""DC-MAE's three stages: the stage-1 loss against its formula and the reference's effective weights, stage 2's
cross-modal parts and loss weights, stage 3's loading rules (voxel counts, stages), and pre-training that learns."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from brain2img.data import schema
from brain2img.encoders.image_mae import ImageMAE
from brain2img.losses import info_nce
from brain2img.methods import DCMAE, DCMAECrossModal, FMRIPretraining
from tests.builders.small import SMALL

TINY = {"preset": "tiny"}
METRICS = {"n_way": 2, "num_trials": 2, "n_boot": 10, "resize": 32}


def _batch(n: int = 6, voxels: int = 40, size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {schema.BRAIN: torch.randn(n, voxels, generator=gen),
            schema.IMAGE: torch.rand(n, 3, size, size, generator=gen),
            schema.STIMULUS_ID: torch.arange(n), schema.INDEX: torch.arange(n), schema.LABEL: torch.zeros(n).long()}


def _save(module: L.LightningModule, path) -> str:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return str(path)


def test_stage1_defaults_are_the_references_effective_weights() -> None:
    m = FMRIPretraining(brain_shape=(40,), encoder=TINY)
    hp = m.hparams
    assert (hp.mask_loss_weight, hp.contrastive_weight, hp.self_contrast_weight, hp.cross_contrast_weight,
            hp.temperature, hp.mask_ratio) == (0.0, 0.5, 0.5, 0.5, 0.1, 0.75)


def test_stage1_loss_is_the_weighted_sum_of_mse_and_two_infonce_terms() -> None:
    torch.manual_seed(0)
    m = FMRIPretraining(brain_shape=(40,), encoder=TINY, mask_loss_weight=0.3)
    x = _batch()[schema.BRAIN]
    out = m.losses(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out["loss"], 0.3 * out["mask"] + 0.5 * (0.5 * out["self"] + 0.5 * out["cross"]))
    # the self term recomputed by hand: the first masking's reconstruction against the padded input
    gen = torch.Generator().manual_seed(5)
    latent, _, ids = m.mae.encoder.forward_masked(x, 0.75, generator=gen)
    rec = m.mae.reconstruction(m.mae.forward_decoder(latent, ids))
    torch.testing.assert_close(out["self"], info_nce(rec, m.mae.signal(x), 0.1))
    latent2, _, ids2 = m.mae.encoder.forward_masked(x, 0.75, generator=gen)  # the second, independent masking
    torch.testing.assert_close(out["cross"], info_nce(rec, m.mae.reconstruction(m.mae.forward_decoder(latent2, ids2))))


def test_stage1_mindvis_objective_has_no_contrast_and_zero_weights_are_refused() -> None:
    m = FMRIPretraining(brain_shape=(40,), encoder=TINY, mask_loss_weight=1.0, contrastive_weight=0.0)
    out = m.losses(_batch()[schema.BRAIN])
    assert out["self"].item() == 0 and out["cross"].item() == 0
    torch.testing.assert_close(out["loss"], out["mask"])
    with pytest.raises(ValueError, match="nothing would train"):
        FMRIPretraining(brain_shape=(40,), contrastive_weight=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        FMRIPretraining(brain_shape=(40,), self_contrast_weight=-1.0)


def test_stage1_learns_masked_patches_of_low_rank_data() -> None:
    """Voxels driven by 4 shared sources: masked patches become predictable from the visible ones."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    mixing = torch.randn(4, 64, generator=gen)
    data = torch.randn(512, 4, generator=gen) @ mixing
    data = (data - data.mean()) / data.std()
    m = FMRIPretraining(brain_shape=(64,), encoder=TINY, mask_loss_weight=1.0, contrastive_weight=0.0, gather=False)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    val = torch.Generator().manual_seed(9)
    before = m.losses(data[:128], torch.Generator().manual_seed(9))["mask"].item()
    for step in range(150):
        loss = m.losses(data[(step * 32) % 512:][:32])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = m.losses(data[:128], val)["mask"].item()
    assert after < 0.5 * before, (before, after)


def test_stage2_parts_and_loss_weights() -> None:
    torch.manual_seed(0)
    m = DCMAECrossModal(brain_shape=(40,), encoder=TINY)
    assert len(m.fmri_cross.blocks) == 3 and len(m.image_cross) == 3
    assert len(m.mae.decoder_blocks) == 6 and m.image.mask_ratio == 0.5
    assert not any(p.requires_grad for p in m.image.model.vit.parameters())  # the ViT encoder is frozen
    assert all(p.requires_grad for n, p in m.image.model.decoder.named_parameters() if "pos_embed" not in n)
    batch = _batch()
    out = m.losses(batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["loss"], 0.25 * out["fmri"] + 1.5 * out["image"])
    tokens = m.image.tokens(m.image.pixels(batch[schema.IMAGE]))
    assert tokens.shape == (6, m.image.n_tokens, m.image.hidden_size) == (6, 17, 48)  # unmasked: 16 patches + CLS


def test_stage2_attends_to_the_image() -> None:
    torch.manual_seed(0)
    m = DCMAECrossModal(brain_shape=(40,), encoder=TINY)
    a, b = _batch(seed=1), _batch(seed=1)
    b[schema.IMAGE] = torch.rand_like(b[schema.IMAGE])
    fa = m.losses(a, torch.Generator().manual_seed(0))["fmri"]
    fb = m.losses(b, torch.Generator().manual_seed(0))["fmri"]
    assert fa.item() != pytest.approx(fb.item(), rel=1e-6)  # same fMRI and masks, other image: other fMRI loss


def test_image_mae_needs_an_existing_folder(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model.image_mae.path"):
        ImageMAE({"kind": "hf", "path": str(tmp_path / "vit-mae-base")})
    with pytest.raises(ValueError, match="mask_ratio"):
        ImageMAE({"mask_ratio": 1.0})


def _dcmae(voxels: int = 40, **kwargs) -> DCMAE:
    return DCMAE(brain_shape=(voxels,), encoder=TINY, backbone={"preset": "tiny", **SMALL}, num_inference_steps=2,
                 scheduler="ddim", linear_probe=False, metrics=METRICS, **kwargs)


def test_stage3_defaults_and_heads() -> None:
    m = _dcmae()
    assert (m.hparams.clip_weight, m.hparams.num_samples, m.hparams.lr) == (0.0, 5, 5.3e-5)
    assert m.cond_stage.n_in == 3 and m.cond_stage.in_dim == 64  # all 3 tokens of the 48 padded voxels


def test_stage3_loads_stage2_and_stage1_encoders_and_refuses_another_subjects_stage2(tmp_path) -> None:
    torch.manual_seed(0)
    stage2 = _save(DCMAECrossModal(brain_shape=(40,), encoder=TINY), tmp_path / "s2.ckpt")
    m = _dcmae()
    m.load_encoder(stage2)
    saved = torch.load(stage2, weights_only=True)["state_dict"]
    torch.testing.assert_close(m.encoder.blocks[0].attn.qkv.weight, saved["mae.encoder.blocks.0.attn.qkv.weight"])
    other = _dcmae(voxels=70)
    before = other.encoder.blocks[0].attn.qkv.weight.detach().clone()
    with pytest.raises(ValueError, match=r"stage-2 encoder of 40 voxels, but this subject has 70"):
        other.load_encoder(stage2)
    torch.testing.assert_close(other.encoder.blocks[0].attn.qkv.weight, before)  # nothing changed
    stage1 = _save(FMRIPretraining(brain_shape=(70,), encoder=TINY), tmp_path / "s1.ckpt")  # a corpus length
    m.load_encoder(stage1)
    with pytest.raises(ValueError, match="width 64"):
        _dcmae().load_encoder(_save(FMRIPretraining(brain_shape=(40,), encoder={"preset": "tiny", "embed_dim": 32}),
                                    tmp_path / "narrow.ckpt"))


def test_stage3_refuses_eeg_shaped_data() -> None:
    with pytest.raises(ValueError, match="n_voxels"):
        DCMAE(brain_shape=(32, 64), encoder=TINY, backbone={"preset": "tiny", **SMALL})
