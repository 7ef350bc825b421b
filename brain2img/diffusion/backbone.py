"""The shared latent-diffusion backbone: a diffusers VAE + conditional UNet + scheduler behind one small API.

Every method uses the same object: ``encode_images`` / ``decode_latents`` for the VAE latent ``z``, ``condition`` to
turn an encoder output into cross-attention tokens, ``denoising_loss`` to train the UNet (epsilon or v prediction, as
the scheduler config says) and ``sample`` for txt2img (from noise) or img2img (from an init latent, Osaka-style:
DDIM 50 steps at strength 0.8 runs the last 40), with classifier-free guidance against the null condition.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, UNet2DConditionModel, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from brain2img.diffusion.conditioner import Conditioner

SCHEDULERS = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "unipc": UniPCMultistepScheduler}


class LatentDiffusion(nn.Module):
    """A VAE, a cross-attention UNet, a noise schedule and a conditioner.

    Args:
        vae: diffusers ``AutoencoderKL``; its ``config.scaling_factor`` scales latents (kept in the buffer
            ``latent_scale``, so a trained scale travels with the state dict).
        unet: diffusers ``UNet2DConditionModel`` whose ``cross_attention_dim`` equals the conditioner's token width.
        scheduler_config: config of the noise schedule (a DDIM/PNDM/DDPM config dict); ``prediction_type`` picks
            the training target (``epsilon`` or ``v_prediction``).
        conditioner: maps conditions to tokens.
        image_size: side of the (square) images the VAE sees; fixes ``latent_shape``.
        null_tokens: ``(1, L, D)`` unconditional embedding (e.g. SD's ``""`` embedding); ``None`` = zeros.
        learn_null: make the null tokens a trainable parameter (trained by condition dropout) instead of a buffer.
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        scheduler_config: dict[str, Any],
        conditioner: Conditioner,
        image_size: int,
        null_tokens: torch.Tensor | None = None,
        learn_null: bool = False,
    ) -> None:
        super().__init__()
        if unet.config.cross_attention_dim != conditioner.token_dim:
            raise ValueError(
                f"UNet cross_attention_dim {unet.config.cross_attention_dim} != conditioner token_dim "
                f"{conditioner.token_dim}"
            )
        self.vae = vae
        self.unet = unet
        self.conditioner = conditioner
        self.image_size = int(image_size)
        self.scheduler_config = dict(scheduler_config)
        self.noise_scheduler = DDIMScheduler.from_config(self.scheduler_config)
        self.prediction_type = self.noise_scheduler.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(
                f"scheduler prediction_type must be 'epsilon' or 'v_prediction', got {self.prediction_type}"
            )
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} must be divisible by the VAE downsampling factor {factor}")
        self.downsampling = factor
        self.register_buffer("latent_scale", torch.tensor(float(vae.config.scaling_factor)))
        shape = (1, conditioner.n_tokens, conditioner.token_dim)
        null = torch.zeros(shape) if null_tokens is None else null_tokens.detach().float().reshape(shape).clone()
        if learn_null:
            self.null_embedding = nn.Parameter(null)
        else:
            self.register_buffer("null_embedding", null)

    # ------------------------------------------------------------------ shapes
    @property
    def scaling_factor(self) -> float:
        """Multiplier from VAE posterior latents to diffusion latents (unit variance)."""
        return float(self.latent_scale)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the latents of one image."""
        side = self.image_size // self.downsampling
        return (int(self.vae.config.latent_channels), side, side)

    @property
    def condition_dim(self) -> int:
        """Size of the flat condition vector ``condition`` expects (e.g. 1280, or 77*768 for SD)."""
        return self.conditioner.condition_dim

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # ------------------------------------------------------------------ VAE
    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.vae.config.in_channels:
            want = self.vae.config.in_channels
            raise ValueError(f"images must have shape (B, {want}, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but the backbone was built for {self.image_size}x"
                f"{self.image_size} (backbone image_size); resize the stimuli or build the backbone for that size"
            )

    def encode_images(
        self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encode images in ``[0, 1]`` ``(B, 3, H, W)`` to scaled latents ``(B, C, h, w)`` (posterior mean/sample)."""
        self._check_images(images)
        dist = self.vae.encode(images.to(self.vae.dtype) * 2 - 1).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return z * self.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode scaled latents ``(B, C, h, w)`` to images in ``[0, 1]`` (clamped)."""
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got "
                             f"{tuple(latents.shape)}")
        x = self.vae.decode(latents.to(self.vae.dtype) / self.scaling_factor).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------ conditioning
    def condition(self, c: torch.Tensor) -> torch.Tensor:
        """Cross-attention tokens ``(B, L, D)`` for a condition (vector ``(B, d)`` or tokens ``(B, L_in, d)``)."""
        return self.conditioner(c)[0]

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        """The unconditional embedding repeated for a batch: ``(B, L, D)``."""
        return self.null_embedding.expand(batch_size, -1, -1)

    def _check_tokens(self, tokens: torch.Tensor, name: str = "tokens") -> None:
        want = (self.conditioner.n_tokens, self.conditioner.token_dim)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != want:
            raise ValueError(f"{name} must have shape (B, {want[0]}, {want[1]}), got {tuple(tokens.shape)}; "
                             "use LatentDiffusion.condition(c) to map an encoder output to tokens")

    # ------------------------------------------------------------------ training
    def denoising_loss(
        self,
        latents: torch.Tensor,
        tokens: torch.Tensor,
        generator: torch.Generator | None = None,
        min_snr_gamma: float | None = None,
    ) -> torch.Tensor:
        """Mean squared error of the UNet's epsilon / v prediction at uniformly drawn timesteps.

        With ``min_snr_gamma`` each sample is weighted by the Min-SNR rule (Hang et al. 2023):
        ``min(SNR, gamma) / SNR`` for epsilon, ``min(SNR, gamma) / (SNR + 1)`` for v prediction.
        """
        self._check_tokens(tokens)
        b = len(latents)
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        t_dev = generator.device if generator is not None else latents.device
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=generator, device=t_dev)
        t = t.to(latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        target = noise if self.prediction_type == "epsilon" else self.noise_scheduler.get_velocity(latents, noise, t)
        pred = self._unet(noisy, t, tokens.to(latents.dtype))
        if not min_snr_gamma:
            return F.mse_loss(pred.float(), target.float())
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)
        alpha_bar = self.noise_scheduler.alphas_cumprod.to(latents.device)[t].float()
        snr = alpha_bar / (1 - alpha_bar)
        weight = snr.clamp(max=min_snr_gamma) / (snr if self.prediction_type == "epsilon" else snr + 1)
        return (weight * per_sample).mean()

    def _unet(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """UNet prediction; a UNet with a class embedding also gets the condition added to its time embedding: the
        tokens themselves when the embedding ``takes_tokens`` (e.g. DreamDiffusion's ``TokenTimeCondition``), else
        their mean (a ``projection`` class embedding: global FiLM)."""
        kwargs = {}
        embedding = getattr(self.unet, "class_embedding", None)
        if getattr(embedding, "takes_tokens", False):
            kwargs["class_labels"] = tokens
        elif self.unet.config.class_embed_type == "projection":
            kwargs["class_labels"] = tokens.mean(dim=1)
        return self.unet(x, t, encoder_hidden_states=tokens, **kwargs).sample

    # ------------------------------------------------------------------ sampling
    def make_scheduler(self, name: str = "ddim") -> DDIMScheduler | PNDMScheduler | UniPCMultistepScheduler:
        """A fresh sampling scheduler (``ddim``, ``pndm`` or ``unipc``) with this backbone's noise schedule."""
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
        config = dict(self.scheduler_config)
        if name == "pndm":
            config.setdefault("skip_prk_steps", True)
        return SCHEDULERS[name].from_config(config)

    @torch.no_grad()
    def sample(
        self,
        tokens: torch.Tensor,
        null_tokens: torch.Tensor | None = None,
        guidance_scale: float = 5.0,
        num_inference_steps: int = 50,
        scheduler: str = "ddim",
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        init_latents: torch.Tensor | None = None,
        strength: float = 0.8,
    ) -> torch.Tensor:
        """Sample latents conditioned on ``tokens`` with classifier-free guidance.

        Args:
            tokens: ``(B, L, D)`` condition tokens (see :meth:`condition`).
            null_tokens: ``(B, L, D)`` unconditional tokens; default :meth:`null_tokens`.
            guidance_scale: ``uncond + s * (cond - uncond)``; 1 runs the conditional UNet only.
            num_inference_steps: scheduler steps for a full (strength 1) trajectory.
            scheduler: ``ddim``, ``pndm`` or ``unipc`` (MindEye1's reconstruction sampler).
            eta: DDIM stochasticity (0 = deterministic DDIM).
            generator: seeds the initial noise (and DDIM noise when ``eta > 0``).
            init_latents: ``(B, C, h, w)`` scaled latents for img2img; ``None`` = txt2img from pure noise.
            strength: img2img only: fraction of the trajectory re-run; the init latent is noised to the timestep
                ``int(num_inference_steps * strength)`` steps from the end (DDIM 50 x 0.8 -> 40 UNet steps).

        Returns:
            Latents ``(B, C, h, w)``; :meth:`decode_latents` turns them into images.
        """
        self._check_tokens(tokens)
        b, device, dtype = len(tokens), self.device, self.unet.dtype
        tokens = tokens.to(device, dtype)
        uncond = self.null_tokens(b) if null_tokens is None else null_tokens
        self._check_tokens(uncond, "null_tokens")
        uncond = uncond.to(device, dtype).expand(b, -1, -1)
        sched = self.make_scheduler(scheduler)
        sched.set_timesteps(num_inference_steps, device=device)
        timesteps = sched.timesteps
        if init_latents is None:
            latents = randn_tensor((b, *self.latent_shape), generator=generator, device=device, dtype=dtype)
            latents = latents * sched.init_noise_sigma
        else:
            if not 0.0 <= strength <= 1.0:
                raise ValueError(f"strength must be in [0, 1], got {strength}")
            if tuple(init_latents.shape) != (b, *self.latent_shape):
                raise ValueError(f"init_latents must have shape {(b, *self.latent_shape)}, got "
                                 f"{tuple(init_latents.shape)}")
            n_run = min(int(num_inference_steps * strength + 1e-6), num_inference_steps)
            start = (num_inference_steps - n_run) * sched.order
            timesteps = timesteps[start:]
            if hasattr(sched, "set_begin_index"):  # multistep solvers (UniPC) index their history from here
                sched.set_begin_index(start)
            latents = init_latents.to(device, dtype)
            if len(timesteps) == 0:
                return latents
            noise = randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype)
            latents = sched.add_noise(latents, noise, timesteps[:1].repeat(b))
        cfg = guidance_scale != 1.0
        context = torch.cat([uncond, tokens]) if cfg else tokens
        step_kwargs = {"eta": eta, "generator": generator} if isinstance(sched, DDIMScheduler) else {}
        for t in timesteps:
            model_in = torch.cat([latents, latents]) if cfg else latents
            model_in = sched.scale_model_input(model_in, t)
            out = self._unet(model_in, t, context)
            if cfg:
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + guidance_scale * (out_cond - out_uncond)
            latents = sched.step(out, t, latents, **step_kwargs).prev_sample
        return latents

    @torch.no_grad()
    def generate(
        self, tokens: torch.Tensor, init_images: torch.Tensor | None = None, **sample_kwargs: Any
    ) -> torch.Tensor:
        """Images in ``[0, 1]`` from tokens: txt2img, or img2img from ``init_images`` (encoded to their latent mean)."""
        init = None if init_images is None else self.encode_images(init_images.to(self.device))
        return self.decode_latents(self.sample(tokens, init_latents=init, **sample_kwargs))
