"""The shared latent-diffusion backbone, its presets, the tiny generator and the prior."""
