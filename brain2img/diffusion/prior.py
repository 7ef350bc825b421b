"""A compact diffusion prior in the spirit of DALLE-2's, as MindEye1 uses it: brain tokens -> CLIP image tokens.

MindEye1 trains ``dalle2_pytorch.DiffusionPrior`` with its ``VersatileDiffusionPriorNetwork``: 100 timesteps, cosine
beta schedule, the network predicts ``x_start`` (the clean image tokens), l2 loss, targets scaled by
``image_embed_scale = sqrt(dim)`` (27.7128 for 768), condition dropout 0.2 with learned null embeddings. The
network is a non-causal transformer over ``[brain tokens (T) | time token (1) | noisy image tokens (T) + learned
positional embedding]`` whose last ``T`` outputs are the prediction.

Differences from the reference network (this is a re-implementation, not checkpoint-compatible):

- The blocks are the repo's pre-norm ViT :class:`~brain2img.encoders.transformer.TransformerBlock` (GELU MLP, full
  multi-head attention with ``heads * dim_head == dim``) instead of dalle2's blocks (SwiGLU feed-forward,
  one shared key/value head, rotary embeddings and a relative-position bias).
- Rotary and relative-position bias are what tell the reference's brain tokens apart; here the brain tokens get a
  learned positional embedding of their own (``brain_pos``) besides the image tokens' (``learned_query``).
- Schedules, noising and sampling updates are diffusers' (:meth:`DiffusionPrior.sample`): training noises with
  ``DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample")`` (Nichol & Dhariwal's cosine
  schedule, betas capped at 0.999; float32 ``alphas_cumprod``, at most 1.1e-7 off a float64 evaluation); ``eta = 1``
  samples with that ``DDPMScheduler``'s ancestral step on the chosen timesteps (all 100: MindEye's
  ``p_sample_loop``), other ``eta`` with ``DDIMScheduler``'s step. The DDIM scheduler is *respaced* (built on the
  ``num_steps`` chosen steps through ``trained_betas``, as guided-diffusion's ``space_timesteps`` does) instead of
  ``set_timesteps(num_steps)`` on the 100-step chain: its step jumps to ``t - 100 // num_steps``, which is not the
  next timestep it is called at for 98 of the 100 step counts with ``"linspace"`` spacing (91 with ``"trailing"``),
  and ``"leading"`` never starts at ``t = 99`` below 100 steps (measured over ``num_steps = 1..100``).
- ``eta`` is limited to ``[0, 1]``: above 1, DDIM's ``sqrt(1 - abar_prev - sigma^2)`` is imaginary near ``t = 0``;
  the earlier hand-written sampler clamped it to 0, ``DDIMScheduler.step`` returns NaN (measured: ``eta = 1.5``).

Condition dropout reproduces dalle2: with ``cond_drop_prob`` the brain tokens of a sample are replaced by
``null_brain_embeds``, and (independently, ``image_cond_drop_prob`` defaulting to ``cond_drop_prob``) its noisy
image tokens by ``null_image_embed``; classifier-free guidance drops both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from brain2img.encoders.transformer import TransformerBlock
from brain2img.presets import config_from_preset


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``(B,)`` (continuous) timesteps -> ``(B, dim)`` embeddings ``[sin(t w_k) | cos(t w_k)]``.

    ``w_k = 10000 ** (-k / (dim / 2 - 1))`` for ``k < dim / 2``; ``dim`` must be even and at least 4.
    """
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


@dataclass
class PriorConfig:
    """Sizes of :class:`DiffusionPrior` (defaults: MindEye1's 257 x 768 prior).

    Attributes:
        dim: token width (CLIP ViT-L/14: 768).
        num_tokens: tokens per embedding ``T`` (257).
        depth: transformer blocks (6).
        dim_head: width per head (64); ``dim_head * heads`` must equal ``dim``.
        heads: attention heads (12).
        ff_mult: MLP width / ``dim`` (4).
        timesteps: diffusion steps (100).
        cond_drop_prob: probability of replacing a sample's brain tokens by the null embedding in training (0.2).
        image_cond_drop_prob: the same for the noisy image tokens; ``None`` = ``cond_drop_prob`` (dalle2).
        image_embed_scale: target scale; ``None`` = ``dim ** 0.5``.
    """

    dim: int = 768
    num_tokens: int = 257
    depth: int = 6
    dim_head: int = 64
    heads: int = 12
    ff_mult: float = 4.0
    timesteps: int = 100
    cond_drop_prob: float = 0.2
    image_cond_drop_prob: float | None = None
    image_embed_scale: float | None = None

    def __post_init__(self) -> None:
        for name in ("dim", "num_tokens", "depth", "dim_head", "heads", "timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"PriorConfig: '{name}' must be a positive integer, got {value!r}")
        if self.dim_head * self.heads != self.dim:
            raise ValueError(
                f"PriorConfig: 'dim_head' * 'heads' ({self.dim_head} * {self.heads}) must equal 'dim' ({self.dim})"
            )
        if self.dim % 2 != 0 or self.dim < 4:
            raise ValueError(f"PriorConfig: 'dim' must be even and >= 4 (sinusoidal time embedding), got {self.dim}")
        if not self.ff_mult > 0:
            raise ValueError(f"PriorConfig: 'ff_mult' must be > 0, got {self.ff_mult!r}")
        for name in ("cond_drop_prob", "image_cond_drop_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"PriorConfig: '{name}' must be in [0, 1], got {value!r}")
        if self.image_embed_scale is not None and not self.image_embed_scale > 0:
            raise ValueError(f"PriorConfig: 'image_embed_scale' must be > 0, got {self.image_embed_scale!r}")


PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"dim": 768, "num_tokens": 257, "depth": 6, "dim_head": 64, "heads": 12, "ff_mult": 4.0,
              "timesteps": 100, "cond_drop_prob": 0.2, "image_cond_drop_prob": None, "image_embed_scale": None},
    "tiny": {"dim": 32, "num_tokens": 4, "depth": 2, "dim_head": 8, "heads": 4, "ff_mult": 2.0,
             "timesteps": 100, "cond_drop_prob": 0.2, "image_cond_drop_prob": None, "image_embed_scale": None},
}


def prior_config(preset: str = "tiny", **overrides: Any) -> PriorConfig:
    """Build a :class:`PriorConfig` from a preset of ``PRIOR_PRESETS`` with field overrides.

    Raises:
        ValueError: for an unknown preset or field name.
    """
    return config_from_preset(PriorConfig, PRIOR_PRESETS, "prior_config", preset, overrides)


class PriorNetwork(nn.Module):
    """The denoiser: ``[brain (T) | time (1) | noisy image (T)]`` tokens -> a transformer -> the last ``T`` tokens.

    Args:
        config: sizes.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        d, n = config.dim, config.num_tokens
        self.dim, self.num_tokens = d, n
        self.to_time_embeds = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Linear(2 * d, d))
        self.learned_query = nn.Parameter(torch.randn(n, d) * d**-0.5)  # image-token positions ("pos_emb" mode)
        self.brain_pos = nn.Parameter(torch.randn(n, d) * d**-0.5)
        self.null_brain_embeds = nn.Parameter(torch.randn(n, d))
        self.null_image_embed = nn.Parameter(torch.randn(n, d))
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.heads, mlp_ratio=config.ff_mult) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(d)
        self.project_out = nn.Linear(d, d, bias=False)

    @staticmethod
    def _drop(x: torch.Tensor, null: torch.Tensor, prob: float, generator: torch.Generator | None) -> torch.Tensor:
        """Replace each sample's tokens by ``null`` with probability ``prob``."""
        if prob <= 0.0:
            return x
        if prob >= 1.0:
            return null.to(x.dtype).expand_as(x)
        draw_device = generator.device if generator is not None else x.device
        keep = (torch.rand(x.shape[0], generator=generator, device=draw_device) >= prob).to(x.device)
        return torch.where(keep[:, None, None], x, null.to(x.dtype)[None])

    def condition(
        self, brain_tokens: torch.Tensor, drop_prob: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The brain tokens the transformer sees: each sample's replaced by ``null_brain_embeds`` with ``drop_prob``."""
        return self._drop(brain_tokens, self.null_brain_embeds, drop_prob, generator)

    def forward(
        self,
        noisy_image: torch.Tensor,
        times: torch.Tensor,
        brain_tokens: torch.Tensor,
        brain_drop_prob: float = 0.0,
        image_drop_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Predict the clean (scaled) image tokens.

        Args:
            noisy_image: ``(B, T, D)`` noised scaled image tokens.
            times: ``(B,)`` timesteps (integers, embedded as continuous values).
            brain_tokens: ``(B, T, D)`` condition.
            brain_drop_prob: probability of replacing a sample's brain tokens by the null embedding.
            image_drop_prob: the same for its noisy image tokens.
            generator: random source for the dropout masks.

        Returns:
            ``(B, T, D)`` predicted ``x_start``.
        """
        brain = self.condition(brain_tokens, brain_drop_prob, generator) + self.brain_pos.to(brain_tokens.dtype)
        image = self._drop(noisy_image, self.null_image_embed, image_drop_prob, generator)
        image = image + self.learned_query.to(image.dtype)
        time = self.to_time_embeds(sinusoidal_embedding(times, self.dim).to(image.dtype))[:, None, :]
        h = torch.cat([brain, time, image], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.project_out(self.norm(h))[:, -self.num_tokens :, :]


class DiffusionPrior(nn.Module):
    """Diffusion prior from brain tokens to CLIP image tokens (MindEye1's ``BrainDiffusionPrior``), see the module
    docstring for the model and the differences from the reference.

    Args:
        dim: token width.
        num_tokens: tokens per embedding.
        depth: transformer blocks.
        dim_head: width per head; ``dim_head * heads == dim``.
        heads: attention heads.
        timesteps: diffusion steps.
        cond_drop_prob: training probability of dropping a sample's brain condition.
        image_embed_scale: target scale; ``None`` = ``dim ** 0.5``.
        ff_mult: MLP width / ``dim``.
        image_cond_drop_prob: training probability of dropping a sample's noisy image tokens; ``None`` =
            ``cond_drop_prob`` (dalle2's behaviour).
    """

    def __init__(
        self,
        dim: int = 768,
        num_tokens: int = 257,
        depth: int = 6,
        dim_head: int = 64,
        heads: int = 12,
        timesteps: int = 100,
        cond_drop_prob: float = 0.2,
        image_embed_scale: float | None = None,
        ff_mult: float = 4.0,
        image_cond_drop_prob: float | None = None,
    ) -> None:
        super().__init__()
        config = PriorConfig(dim, num_tokens, depth, dim_head, heads, ff_mult, timesteps, cond_drop_prob,
                             image_cond_drop_prob, image_embed_scale)
        self.config = config
        self.timesteps = timesteps
        self.cond_drop_prob = cond_drop_prob
        self.image_cond_drop_prob = cond_drop_prob if image_cond_drop_prob is None else image_cond_drop_prob
        self.image_embed_scale = float(dim**0.5 if image_embed_scale is None else image_embed_scale)
        self.net = PriorNetwork(config)
        # the training chain (holds no weights, so it stays out of the state_dict)
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=timesteps, beta_schedule="squaredcos_cap_v2",
                                             prediction_type="sample", clip_sample=False)
        self.register_buffer("alphas_cumprod", self.noise_scheduler.alphas_cumprod.clone(), persistent=False)

    @classmethod
    def from_config(cls, config: PriorConfig) -> DiffusionPrior:
        """Build from a :class:`PriorConfig`."""
        return cls(config.dim, config.num_tokens, config.depth, config.dim_head, config.heads, config.timesteps,
                   config.cond_drop_prob, config.image_embed_scale, config.ff_mult, config.image_cond_drop_prob)

    def _check_tokens(self, x: torch.Tensor, name: str) -> None:
        expected = (self.config.num_tokens, self.config.dim)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"DiffusionPrior: '{name}' must have shape (B, num_tokens={expected[0]}, dim={expected[1]}), "
                f"got {tuple(x.shape)}"
            )

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise ``x_start`` to steps ``t`` (``(B,)``): ``sqrt(abar_t) x_start + sqrt(1 - abar_t) noise``.

        This is the training scheduler's ``add_noise``.
        """
        return self.noise_scheduler.add_noise(x_start, noise, t)

    def forward(
        self,
        brain_tokens: torch.Tensor,
        image_tokens: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        return_pred: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Training loss: MSE between the predicted and the true ``image_tokens * image_embed_scale``.

        A timestep per sample is drawn uniformly from ``[0, timesteps)``; the condition dropouts apply in training
        mode only.

        Args:
            brain_tokens: ``(B, T, D)`` condition (MindEye: ``BrainNetwork`` backbone tokens, before the projector).
            image_tokens: ``(B, T, D)`` targets (CLIP tokens divided by the CLS-token norm).
            generator: random source for timesteps, noise and dropout masks.
            return_pred: also return the prediction divided back by the scale (MindEye's ``aligned_clip_voxels``).

        Returns:
            The loss, or ``(loss, pred (B, T, D))``.
        """
        self._check_tokens(brain_tokens, "brain_tokens")
        self._check_tokens(image_tokens, "image_tokens")
        if brain_tokens.shape[0] != image_tokens.shape[0]:
            raise ValueError(
                f"DiffusionPrior: batch sizes differ: brain_tokens {brain_tokens.shape[0]}, "
                f"image_tokens {image_tokens.shape[0]}"
            )
        b = image_tokens.shape[0]
        draw_device = generator.device if generator is not None else image_tokens.device
        times = torch.randint(0, self.timesteps, (b,), generator=generator, device=draw_device).to(image_tokens.device)
        noise = torch.randn(image_tokens.shape, generator=generator, device=draw_device, dtype=image_tokens.dtype)
        x_start = image_tokens * self.image_embed_scale
        noisy = self.q_sample(x_start, times, noise.to(image_tokens.device))
        drop_brain = self.cond_drop_prob if self.training else 0.0
        drop_image = self.image_cond_drop_prob if self.training else 0.0
        pred = self.net(noisy, times, brain_tokens, drop_brain, drop_image, generator)
        loss = F.mse_loss(pred, x_start)
        if return_pred:
            return loss, pred / self.image_embed_scale
        return loss

    def _predict_x_start(
        self, x: torch.Tensor, times: torch.Tensor, brain_tokens: torch.Tensor, cond_scale: float
    ) -> torch.Tensor:
        pred = self.net(x, times, brain_tokens)
        if cond_scale == 1.0:
            return pred
        null = self.net(x, times, brain_tokens, brain_drop_prob=1.0, image_drop_prob=1.0)
        return null + (pred - null) * cond_scale

    def _sampler(self, schedule: list[int], eta: float) -> tuple[DDPMScheduler | DDIMScheduler, list[int]]:
        """The diffusers scheduler stepping along ``schedule`` (descending timesteps) and the timestep to hand its
        ``step`` at each entry.

        ``eta = 1``: a fresh ``DDPMScheduler`` of the training chain with ``schedule`` as custom timesteps (its step
        samples the posterior ``q(x_prev | x_t, x0)`` between consecutive entries). Otherwise a ``DDIMScheduler``
        respaced onto ``schedule``: ``len(schedule)`` steps whose ``alphas_cumprod`` are the chain's at ``schedule``
        (``trained_betas[k] = 1 - abar[s_k] / abar[s_{k-1}]``), stepped at ``k = len - 1, ..., 0``.
        """
        if eta == 1.0:
            ddpm = DDPMScheduler.from_config(self.noise_scheduler.config)
            ddpm.set_timesteps(timesteps=schedule)
            return ddpm, schedule
        abar = self.noise_scheduler.alphas_cumprod.detach().cpu().double()[schedule[::-1]]
        betas = 1 - abar / torch.cat([abar.new_ones(1), abar[:-1]])
        ddim = DDIMScheduler(num_train_timesteps=len(schedule), trained_betas=betas.numpy(), clip_sample=False,
                             set_alpha_to_one=True, prediction_type="sample", timestep_spacing="leading")
        ddim.set_timesteps(len(schedule))
        return ddim, ddim.timesteps.tolist()

    @torch.no_grad()
    def sample(
        self,
        brain_tokens: torch.Tensor,
        num_steps: int | None = None,
        cond_scale: float = 1.0,
        generator: torch.Generator | None = None,
        eta: float = 1.0,
    ) -> torch.Tensor:
        """Sample image tokens for ``brain_tokens``, divided back by ``image_embed_scale``.

        Starts from standard normal noise and runs ``num_steps`` steps at the timesteps
        ``linspace(timesteps - 1, 0, num_steps).round()``, each the diffusers scheduler ``step`` on the network's
        ``x0`` prediction: ``DDPMScheduler``'s ancestral step for ``eta = 1`` (with ``num_steps = timesteps``
        MindEye's ``p_sample_loop``), ``DDIMScheduler``'s ``x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev -
        sigma^2) eps + sigma z``, ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))``
        otherwise (see the module docstring for the respacing). The last step returns the predicted ``x0``.

        Args:
            brain_tokens: ``(B, T, D)`` condition.
            num_steps: number of denoising steps; ``None`` = ``timesteps``.
            cond_scale: classifier-free guidance scale (1 = none, MindEye's setting).
            generator: random source for the initial and the per-step noise.
            eta: 1 = DDPM ancestral steps, 0 = deterministic DDIM; in ``[0, 1]``.

        Returns:
            ``(B, T, D)`` image tokens (not re-normalised; MindEye divides each sample by its CLS-token norm).
        """
        self._check_tokens(brain_tokens, "brain_tokens")
        steps = self.timesteps if num_steps is None else num_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.timesteps:
            raise ValueError(f"DiffusionPrior.sample: 'num_steps' must be in [1, {self.timesteps}], got {num_steps!r}")
        if eta < 0:
            raise ValueError(f"DiffusionPrior.sample: 'eta' must be >= 0, got {eta!r}")
        if eta > 1:
            raise ValueError(f"DiffusionPrior.sample: 'eta' must be <= 1 (DDIM), got {eta!r}")
        b, device, dtype = brain_tokens.shape[0], brain_tokens.device, brain_tokens.dtype
        draw_device = generator.device if generator is not None else device
        x = torch.randn(brain_tokens.shape, generator=generator, device=draw_device, dtype=dtype).to(device)
        schedule = torch.linspace(self.timesteps - 1, 0, steps).round().long().tolist()
        scheduler, step_timesteps = self._sampler(schedule, eta)
        step_kwargs: dict[str, Any] = {} if eta == 1.0 else {"eta": eta}
        for i, (t, step_t) in enumerate(zip(schedule, step_timesteps, strict=True)):
            times = torch.full((b,), t, device=device, dtype=torch.long)
            x0 = self._predict_x_start(x, times, brain_tokens, cond_scale)
            out = scheduler.step(x0, step_t, x, generator=generator, **step_kwargs)
            # last step: abar_prev = 1, prev_sample is x0 (DDPM still adds its 1e-20 variance floor when t > 0)
            x = out.pred_original_sample if i == steps - 1 else out.prev_sample
        return x / self.image_embed_scale
