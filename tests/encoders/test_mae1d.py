"""DreamDiffusion EEG encoder and masked autoencoder: shapes, masking, loss, layout, sizes, round trips, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brain2img.encoders.mae1d import (
    EEG_MAE_PRESETS,
    MAE1DConfig,
    MaskedSignalAutoencoder,
    PatchEmbed1D,
    SignalEncoder,
    eeg_mae_config,
)
from brain2img.encoders.pos_embed import get_1d_sincos_pos_embed
from brain2img.encoders.transformer import TransformerBlock


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """These models are tiny: one intra-op thread avoids OpenMP thrashing on a shared, oversubscribed CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _paper_shaped_small() -> MAE1DConfig:
    """The paper's input geometry (128 channels, 512 samples, patch 4 -> 128 tokens) with a tiny network."""
    return eeg_mae_config(
        "paper", embed_dim=32, depth=1, num_heads=4, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=4
    )


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_patchify(x: np.ndarray, patch: int) -> np.ndarray:
    """Explicit loop: token t holds x[:, patch*t : patch*t + patch], time-major (all channels of step 0, then 1...)."""
    b, c, t_len = x.shape
    out = np.zeros((b, t_len // patch, patch * c), dtype=x.dtype)
    for i in range(b):
        for t in range(t_len // patch):
            for j in range(patch):
                for ch in range(c):
                    out[i, t, j * c + ch] = x[i, ch, patch * t + j]
    return out


# ------------------------------------------------------------------ positional embedding and transformer block


def test_sincos_pos_embed_matches_numpy_formula():
    dim, length = 16, 10
    emb = get_1d_sincos_pos_embed(dim, length, cls_token=True).numpy()
    assert emb.shape == (length + 1, dim) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[0], 0.0)
    omega = 1.0 / 10000.0 ** (2.0 * np.arange(dim // 2) / dim)
    for p in range(length):
        np.testing.assert_allclose(emb[p + 1, : dim // 2], np.sin(p * omega), atol=1e-6)
        np.testing.assert_allclose(emb[p + 1, dim // 2 :], np.cos(p * omega), atol=1e-6)
    no_cls = get_1d_sincos_pos_embed(dim, length).numpy()
    assert no_cls.shape == (length, dim)
    np.testing.assert_array_equal(no_cls, emb[1:])
    with pytest.raises(ValueError, match="dim"):
        get_1d_sincos_pos_embed(7, length)


def test_transformer_block_matches_numpy_reference():
    torch.manual_seed(0)
    dim, heads, n = 8, 2, 5
    block = TransformerBlock(dim, heads, mlp_ratio=1.5)
    for p in block.parameters():  # non-trivial LayerNorm affine and biases
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, n, dim)
    with torch.no_grad():
        got = block(x).numpy()
    w = {k: v.detach().double().numpy() for k, v in block.state_dict().items()}
    assert w["mlp.fc1.weight"].shape == (int(dim * 1.5), dim) and w["attn.qkv.bias"].shape == (3 * dim,)

    def layer_norm(h, g, b):
        mu = h.mean(-1, keepdims=True)
        var = h.var(-1, keepdims=True)
        return (h - mu) / np.sqrt(var + 1e-5) * g + b

    def gelu(h):
        from scipy.special import erf

        return 0.5 * h * (1 + erf(h / np.sqrt(2)))

    xs = x.double().numpy()
    expected = np.zeros_like(xs)
    hd = dim // heads
    for b in range(xs.shape[0]):
        h = xs[b]
        a = layer_norm(h, w["norm1.weight"], w["norm1.bias"])
        qkv = a @ w["attn.qkv.weight"].T + w["attn.qkv.bias"]
        q, k, v = qkv[:, :dim], qkv[:, dim : 2 * dim], qkv[:, 2 * dim :]
        heads_out = []
        for i in range(heads):
            sl = slice(i * hd, (i + 1) * hd)
            s = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            heads_out.append((s / s.sum(-1, keepdims=True)) @ v[:, sl])
        h = h + np.concatenate(heads_out, -1) @ w["attn.proj.weight"].T + w["attn.proj.bias"]
        m = layer_norm(h, w["norm2.weight"], w["norm2.bias"])
        m = gelu(m @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"]) @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]
        expected[b] = h + m
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ config


def test_config_presets_and_validation():
    paper = eeg_mae_config("paper")
    assert paper == MAE1DConfig() and paper.n_tokens == 128 and paper.mask_ratio == 0.75
    tiny = eeg_mae_config()
    assert (tiny.n_channels, tiny.n_times, tiny.n_tokens, tiny.embed_dim) == (32, 64, 16, 64)
    assert set(EEG_MAE_PRESETS) == {"paper", "tiny"}
    assert eeg_mae_config("tiny", mask_ratio=0.1).mask_ratio == 0.1
    with pytest.raises(ValueError, match="n_times"):
        eeg_mae_config("tiny", n_times=62)
    with pytest.raises(ValueError, match="num_heads"):
        eeg_mae_config("tiny", num_heads=5)
    with pytest.raises(ValueError, match="decoder_num_heads"):
        eeg_mae_config("tiny", decoder_num_heads=5)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            eeg_mae_config("tiny", mask_ratio=bad)
    with pytest.raises(ValueError, match="unknown preset"):
        eeg_mae_config("huge")
    with pytest.raises(ValueError, match="embed_dimm"):
        eeg_mae_config("tiny", embed_dimm=3)


# ------------------------------------------------------------------ shapes


def test_paper_geometry_gives_128_tokens():
    cfg = _paper_shaped_small()
    assert cfg.n_tokens == 128
    x = torch.randn(2, 128, 512)
    pe = PatchEmbed1D(128, 4, 32)
    assert pe(x).shape == (2, 128, 32)
    enc = SignalEncoder(cfg)
    assert enc.n_tokens == 128 and enc.embed_dim == 32
    assert enc(x).shape == (2, 128, 32)
    mae = MaskedSignalAutoencoder(cfg)
    loss, pred, mask = mae(x)
    assert loss.ndim == 0 and pred.shape == (2, 128, 512) and mask.shape == (2, 128)


def test_patch_embed_token_t_sees_only_its_time_window():
    pe = PatchEmbed1D(3, 4, 6)
    x = torch.randn(1, 3, 20)
    y = x.clone()
    y[:, :, 8:12] += 1.0  # token 2
    diff = (pe(y) - pe(x)).abs().sum(-1)[0]
    assert diff[2] > 0 and torch.all(diff[torch.arange(5) != 2] == 0)


@pytest.mark.parametrize("bad_shape", [(2, 31, 64), (2, 32, 60), (32, 64), (1, 2, 32, 64)])
def test_wrong_input_shape_is_a_clear_error(bad_shape):
    cfg = eeg_mae_config("tiny")
    x = torch.randn(*bad_shape)
    enc = SignalEncoder(cfg)
    mae = MaskedSignalAutoencoder(cfg)
    for call in (lambda: enc(x), lambda: enc.forward_masked(x, 0.5), lambda: mae(x), lambda: mae.patchify(x)):
        with pytest.raises(ValueError, match=r"n_channels=32, n_times=64") as err:
            call()
        assert str(tuple(bad_shape)) in str(err.value)


# ------------------------------------------------------------------ masking


@pytest.mark.parametrize(("ratio", "keep"), [(0.75, 32), (0.1, 115)])
def test_mask_ratio_semantics(ratio, keep):
    torch.manual_seed(0)
    enc = SignalEncoder(_paper_shaped_small())
    x = torch.randn(4, 128, 512)
    with torch.no_grad():
        latent, mask, ids_restore = enc.forward_masked(x, ratio, generator=_gen(1))
    assert latent.shape == (4, 1 + keep, 32)
    assert mask.shape == (4, 128) and ids_restore.shape == (4, 128)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask.sum(1).tolist() == [128 - keep] * 4
    # ids_restore[t] is token t's rank in the shuffle; the first `keep` ranks are kept
    assert torch.equal(mask.bool(), ids_restore >= keep)
    for b in range(4):
        assert sorted(ids_restore[b].tolist()) == list(range(128))
    assert any(not torch.equal(mask[0], mask[b]) for b in range(1, 4))
    with torch.no_grad():
        latent2, mask2, ids2 = enc.forward_masked(x, ratio, generator=_gen(1))
        _, mask3, _ = enc.forward_masked(x, ratio, generator=_gen(2))
    assert torch.equal(mask, mask2) and torch.equal(ids_restore, ids2) and torch.equal(latent, latent2)
    assert not torch.equal(mask, mask3)


def test_masked_encoder_only_sees_kept_tokens():
    torch.manual_seed(0)
    cfg = eeg_mae_config("tiny")
    enc = SignalEncoder(cfg)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        latent, mask, _ = enc.forward_masked(x, 0.75, generator=_gen(3))
    p = cfg.patch_size
    masked_t = int(mask[0].nonzero()[0])
    kept_t = int((mask[0] == 0).nonzero()[0])
    y = x.clone()
    y[0, :, p * masked_t : p * masked_t + p] += 5.0
    z = x.clone()
    z[0, :, p * kept_t : p * kept_t + p] += 5.0
    with torch.no_grad():
        latent_y, _, _ = enc.forward_masked(y, 0.75, generator=_gen(3))
        latent_z, _, _ = enc.forward_masked(z, 0.75, generator=_gen(3))
    torch.testing.assert_close(latent_y, latent, rtol=0, atol=0)
    assert not torch.allclose(latent_z[0], latent[0])
    torch.testing.assert_close(latent_z[1], latent[1], rtol=0, atol=0)


def test_mae_uses_config_mask_ratio_by_default():
    cfg = eeg_mae_config("tiny", mask_ratio=0.5)
    mae = MaskedSignalAutoencoder(cfg)
    with torch.no_grad():
        _, _, mask = mae(torch.randn(3, 32, 64))
        _, _, mask_25 = mae(torch.randn(3, 32, 64), mask_ratio=0.25)
    assert mask.sum(1).tolist() == [8.0] * 3  # 16 tokens, keep int(16 * 0.5) = 8
    assert mask_25.sum(1).tolist() == [4.0] * 3  # keep int(16 * 0.75) = 12


# ------------------------------------------------------------------ patchify and loss


def test_patchify_layout_and_inverse():
    cfg = eeg_mae_config("tiny", n_channels=3, n_times=12)
    mae = MaskedSignalAutoencoder(cfg)
    x = torch.randn(2, 3, 12)
    patches = mae.patchify(x)
    assert patches.shape == (2, 3, 12)
    np.testing.assert_array_equal(patches.numpy(), _numpy_patchify(x.numpy(), 4))
    # token 1 = x[:, 4:8] flattened time-major
    np.testing.assert_array_equal(patches[0, 1].numpy(), x[0, :, 4:8].T.reshape(-1).numpy())
    assert torch.equal(mae.unpatchify(patches), x)
    with pytest.raises(ValueError, match="patch_size\\*n_channels=12"):
        mae.unpatchify(torch.randn(2, 3, 11))


def test_loss_is_mse_over_masked_tokens_only():
    torch.manual_seed(0)
    cfg = eeg_mae_config("tiny")
    mae = MaskedSignalAutoencoder(cfg)
    x = torch.randn(3, 32, 64)
    with torch.no_grad():
        loss, pred, mask = mae(x, mask_ratio=0.75, generator=_gen(5))
    target = _numpy_patchify(x.numpy().astype(np.float64), cfg.patch_size)
    err = ((pred.numpy().astype(np.float64) - target) ** 2).mean(-1)
    m = mask.numpy().astype(np.float64)
    expected = (err * m).sum() / m.sum()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    assert abs(err.mean() - expected) > 1e-4  # kept tokens would change the value: the test can tell them apart
    # nothing masked -> zero loss, still differentiable
    loss0, _, mask0 = mae(x, mask_ratio=0.0)
    assert mask0.sum() == 0 and loss0.item() == 0.0 and loss0.requires_grad


def test_loss_ignores_errors_on_kept_tokens():
    torch.manual_seed(0)
    cfg = eeg_mae_config("tiny")
    mae = MaskedSignalAutoencoder(cfg)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        _, pred, mask = mae(x, generator=_gen(6))
    # a target equal to pred on masked tokens and far off on kept ones has zero loss
    target = torch.where(mask.bool().unsqueeze(-1), pred, pred + 10.0)
    assert mae.masked_loss(mae.unpatchify(target), pred, mask).item() == 0.0
    target = torch.where(mask.bool().unsqueeze(-1), pred + 1.0, pred)
    torch.testing.assert_close(mae.masked_loss(mae.unpatchify(target), pred, mask), torch.tensor(1.0))


# ------------------------------------------------------------------ parameter counts of the paper model


@pytest.fixture(scope="module")
def paper_models() -> tuple[MaskedSignalAutoencoder, SignalEncoder]:
    cfg = eeg_mae_config("paper")
    with torch.device("meta"):  # counts only: no memory, no init cost
        return MaskedSignalAutoencoder(cfg), SignalEncoder(cfg)


def _count(named, trainable_only: bool = False) -> int:
    return sum(p.numel() for _, p in named if p.requires_grad or not trainable_only)


def test_paper_parameter_counts(paper_models):
    mae, enc = paper_models
    assert _count(mae.named_parameters()) == 165_380_096
    assert _count((n, p) for n, p in mae.named_parameters() if not n.startswith("encoder.")) == 13_478_912
    assert _count(enc.named_parameters()) == 151_902_208
    assert _count(enc.named_parameters(), trainable_only=True) == 151_770_112
    assert enc.pos_embed.shape == (1, 129, 1024) and not enc.pos_embed.requires_grad
    assert mae.decoder_pos_embed.shape == (1, 129, 512) and not mae.decoder_pos_embed.requires_grad
    assert mae.decoder_pred.out_features == 512 and enc.blocks[0].mlp.fc1.out_features == 1024
    # the standalone encoder's extra 1,024 are the reference's unused mask token
    assert _count(enc.named_parameters()) - _count(mae.encoder.named_parameters()) == 1024
    assert enc.mask_token.shape == (1, 1, 1024) and mae.encoder.mask_token is None


# ------------------------------------------------------------------ state dicts, init, learning


def test_encoder_state_dict_round_trip_from_mae():
    torch.manual_seed(0)
    cfg = eeg_mae_config("tiny")
    mae = MaskedSignalAutoencoder(cfg)
    torch.manual_seed(123)
    enc = SignalEncoder(cfg)
    x = torch.randn(2, 32, 64)
    with torch.no_grad():
        assert not torch.allclose(enc(x), mae.encoder(x))
        enc.load_state_dict(mae.encoder.state_dict(), strict=True)
        torch.testing.assert_close(enc(x), mae.encoder(x), rtol=0, atol=0)
        a = enc.forward_masked(x, 0.75, generator=_gen(0))
        b = mae.encoder.forward_masked(x, 0.75, generator=_gen(0))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    # the other way (standalone encoder -> MAE encoder) also loads strictly; only the unused token is dropped
    mae2 = MaskedSignalAutoencoder(cfg)
    mae2.encoder.load_state_dict(enc.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(mae2.encoder(x), enc(x), rtol=0, atol=0)
    # any other mismatch still fails
    bad = dict(mae.encoder.state_dict())
    bad.pop("norm.weight")
    with pytest.raises(RuntimeError, match="norm.weight"):
        enc.load_state_dict(bad, strict=True)


def test_init_is_deterministic_and_follows_mae():
    cfg = eeg_mae_config("tiny")
    torch.manual_seed(7)
    a = MaskedSignalAutoencoder(cfg).state_dict()
    torch.manual_seed(7)
    b = MaskedSignalAutoencoder(cfg).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(7)
    enc = SignalEncoder(cfg)
    for k, v in enc.state_dict().items():  # same weights as the MAE's encoder under the same seed
        if k != "mask_token":
            assert torch.equal(v, a["encoder." + k]), k
    np.testing.assert_array_equal(a["encoder.pos_embed"][0].numpy(), get_1d_sincos_pos_embed(64, 16, True).numpy())
    for k, v in a.items():
        if k.endswith("norm1.weight") or k.endswith("norm.weight"):
            assert torch.all(v == 1), k
        if k.endswith(".bias"):
            assert torch.all(v == 0), k
    w = a["encoder.patch_embed.proj.weight"]  # xavier on the (embed_dim, C * patch) view
    bound = (6.0 / (w.shape[0] + w.shape[1] * w.shape[2])) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    q = a["decoder_blocks.0.attn.qkv.weight"]
    bound_q = (6.0 / (q.shape[0] + q.shape[1])) ** 0.5
    assert q.abs().max() <= bound_q and q.abs().max() > 0.9 * bound_q


def test_training_reduces_masked_loss():
    torch.manual_seed(0)
    cfg = eeg_mae_config("tiny")
    mae = MaskedSignalAutoencoder(cfg)
    t = torch.arange(cfg.n_times, dtype=torch.float32) / cfg.n_times
    template = torch.sin(2 * torch.pi * t) + 0.5 * torch.sin(2 * torch.pi * 3 * t + 1.0)
    amp = torch.rand(4) + 0.5
    gains = torch.linspace(0.5, 1.5, cfg.n_channels)
    # (4, 32, 64): one sum of sinusoids on every channel and sample, scaled per channel and per sample
    x = amp[:, None, None] * gains[None, :, None] * template[None, None, :]

    def eval_loss() -> float:
        with torch.no_grad():
            return mae(x, generator=_gen(99))[0].item()

    before = eval_loss()
    opt = torch.optim.Adam(mae.parameters(), lr=2e-3)
    gen = _gen(0)
    for _ in range(60):
        loss, _, _ = mae(x, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < before / 2, (before, after)
    assert not mae.encoder.pos_embed.requires_grad and mae.encoder.pos_embed.grad is None
