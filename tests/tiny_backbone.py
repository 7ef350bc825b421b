"""The smallest backbone settings shared by the diffusion tests (builds in milliseconds)."""

SMALL = {
    "image_size": 16,
    "vae_channels": (8, 16),
    "unet_channels": (16, 32),
    "unet_attention": (False, True),
    "cross_attention_dim": 16,
    "n_tokens": 2,
    "condition_dim": 12,
    "conditioner_hidden": 32,
}
