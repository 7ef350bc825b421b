"""The fMRI masked autoencoder against the MinD-Vis / DC-MAE facts: padding, token counts, parameter counts of the
paper preset, patch layout, conditioning head sizes, and loading an encoder saved for another voxel count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brain2img.diffusion.token_maps import TokenMapper, TokenTimeCondition
from brain2img.encoders.fmri_mae import FMRIEncoder, MaskedFMRIAutoencoder, fmri_mae_config
from brain2img.encoders.transformer import CrossAttentionBlock, CrossStack
from brain2img.encoders.voxel_padding import pad_to_length, pad_to_patch_size, padded_length
from brain2img.specs import FMRIEncoderSpec, fmri_encoder_config
from brain2img.weights import load_by_prefix


@pytest.mark.parametrize(("voxels", "padded"), [(5355, 5360), (4656, 4672), (1685, 1696), (6237, 6240),
                                                 (3444, 3456), (4979, 4992)])
def test_padding_adds_a_full_patch_to_a_divisible_count(voxels: int, padded: int) -> None:
    assert padded_length(voxels, 16) == padded
    assert fmri_mae_config(voxels, "paper").n_times == padded


def test_token_counts_of_the_paper_subjects() -> None:
    assert fmri_mae_config(5355, "paper").n_tokens == 335  # GOD sbj_3
    assert fmri_mae_config(1685, "paper").n_tokens == 106  # BOLD5000 CSI1


def test_wrap_padding_repeats_the_first_voxels_in_numpy_and_torch() -> None:
    x = np.arange(2 * 21, dtype=np.float32).reshape(2, 21)
    padded = pad_to_patch_size(x, 16)
    np.testing.assert_array_equal(padded, np.concatenate([x, x[:, :11]], axis=1))  # 21 -> 32
    np.testing.assert_array_equal(pad_to_patch_size(torch.from_numpy(x), 16).numpy(), padded)
    np.testing.assert_array_equal(pad_to_length(x[:, :5], 12), np.concatenate([x[:, :5]] * 3, axis=1)[:, :12])
    with pytest.raises(ValueError, match="never truncates"):
        pad_to_length(x, 20)


def test_paper_encoder_has_the_reference_parameter_count() -> None:
    with torch.device("meta"):
        encoder = FMRIEncoder(fmri_mae_config(5355, "paper"))
    assert sum(p.numel() for p in encoder.parameters()) == 151_606_272  # sbj_3, mask_token included
    assert tuple(encoder.patch_embed.proj.weight.shape) == (1024, 1, 16)
    assert len(encoder.blocks) == 24 and encoder.blocks[0].mlp.fc1.out_features == 1024  # mlp ratio 1.0


def test_conditioning_heads_of_the_label2img_context() -> None:
    heads = TokenMapper(335, 1024, 77, 512)  # Conv1d(335 -> 167 -> 77) + Linear(1024 -> 512)
    assert sum(p.numel() for p in heads.channel_mapper.parameters()) == 69_048
    assert sum(p.numel() for p in heads.dim_mapper.parameters()) == 524_800
    assert heads(torch.zeros(2, 335, 1024)).shape == (2, 77, 512)
    time = TokenTimeCondition(77, 512, 768)
    assert tuple(time.proj.weight.shape) == (768, 512)
    assert time(torch.zeros(2, 77, 512)).shape == (2, 768)


def test_patches_are_sixteen_padded_voxels_and_reconstruction_inverts_them() -> None:
    config = fmri_mae_config(40, "tiny")  # 40 -> 48 voxels, 3 tokens
    mae = MaskedFMRIAutoencoder(config)
    x = torch.randn(2, 40)
    signal = mae.signal(x)
    assert signal.shape == (2, 48)
    torch.testing.assert_close(signal[:, 40:], x[:, :8])
    patches = mae.patchify(x)
    assert patches.shape == (2, 3, 16)
    torch.testing.assert_close(patches[:, 1], signal[:, 16:32])
    torch.testing.assert_close(mae.reconstruction(patches), signal)


def test_masked_loss_is_the_mse_over_masked_patches_by_numpy() -> None:
    torch.manual_seed(0)
    mae = MaskedFMRIAutoencoder(fmri_mae_config(100, "tiny"))
    x = torch.randn(3, 100)
    loss, pred, mask = mae(x, generator=torch.Generator().manual_seed(1))
    assert mask.sum(1).tolist() == [7 - int(7 * 0.25)] * 3  # 7 tokens, int(7 * 0.25) = 1 kept
    err = ((pred.detach().numpy() - mae.patchify(x).numpy()) ** 2).mean(-1)
    m = mask.numpy()
    np.testing.assert_allclose(loss.item(), (err * m).sum() / m.sum(), rtol=1e-5)


def test_wrong_voxel_count_is_refused_with_both_counts() -> None:
    encoder = FMRIEncoder(fmri_mae_config(40, "tiny"))
    with pytest.raises(ValueError, match=r"40 voxels \(padded to 48\).*\(2, 41\)"):
        encoder(torch.zeros(2, 41))


def test_an_encoder_saved_for_another_length_loads_with_its_own_positions(tmp_path) -> None:
    torch.manual_seed(0)
    corpus = FMRIEncoder(fmri_mae_config(70, "tiny"))  # 80 padded voxels, 5 tokens
    torch.save({"state_dict": {f"mae.encoder.{k}": v for k, v in corpus.state_dict().items()}}, tmp_path / "c.ckpt")
    subject = FMRIEncoder(fmri_mae_config(40, "tiny"))  # 3 tokens
    own_pos = subject.pos_embed.detach().clone()
    with pytest.raises(ValueError, match="pos_embed"):
        load_by_prefix(subject, tmp_path / "c.ckpt", "mae.encoder.", "an encoder")
    load_by_prefix(subject, tmp_path / "c.ckpt", "mae.encoder.", "an encoder", keep_if_resized=("pos_embed",))
    torch.testing.assert_close(subject.pos_embed, own_pos)
    torch.testing.assert_close(subject.blocks[1].attn.qkv.weight, corpus.blocks[1].attn.qkv.weight)


def test_spec_takes_the_voxel_count_from_the_data_and_refuses_eeg_shapes() -> None:
    config = fmri_encoder_config((5355,), {"preset": "paper", "decoder_depth": 6})
    assert (config.n_voxels, config.n_times, config.decoder_depth) == (5355, 5360, 6)
    with pytest.raises(ValueError, match="n_voxels"):
        fmri_encoder_config((32, 64), FMRIEncoderSpec())
    with pytest.raises(ValueError, match="cannot be set"):
        FMRIEncoderSpec.coerce({"preset": "tiny", "n_voxels": 10})


def test_cross_blocks_attend_to_the_context() -> None:
    torch.manual_seed(0)
    block = CrossAttentionBlock(16, 4)
    x, c1, c2 = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    assert block(x, c1).shape == (2, 5, 16)
    assert not torch.allclose(block(x, c1), block(x, c2))
    stack = CrossStack(32, 16, 32, depth=3, num_heads=4)
    assert len(stack.blocks) == 3 and stack(torch.randn(2, 5, 32), c1).shape == (2, 5, 32)
