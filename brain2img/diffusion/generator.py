"""Train the tiny image generator (VAE, then conditional UNet) on CPU in about two minutes, and cache it.

Stage 1 trains the ``AutoencoderKL`` on random crops (and flips) of the images: L1 + MSE reconstruction plus a small
KL term; the latent scale is then set so the training latents have unit variance. Stage 2 trains the UNet and the
conditioner on posterior samples of those latents, conditioned on the image features, with a fraction of the
conditions replaced by the learned null tokens (classifier-free guidance). Both stages use AdamW with warm-up and a
cosine decay over the step count. Everything is seeded and runs a fixed number of steps, so the result is identical
across runs whatever the machine's load. ``time_budget_s`` is an optional cap (off by default): a stage that runs past
its share stops early with a warning, and such a generator is used for that run but never cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from brain2img.diffusion.backbone import LatentDiffusion
from brain2img.diffusion.tiny import TinyConfig, build_tiny
from brain2img.io import load_torch, read_json, staging_folder, write_json_atomic

STATE_FILE = "model.pt"
CONFIG_FILE = "config.json"

NOT_HASHED = ("time_budget_s", "vae_budget_fraction")  # caps only: a cached generator ran all its steps

def _check_inputs(images: torch.Tensor, features: torch.Tensor, cfg: TinyConfig) -> None:
    size = cfg.image_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (cfg.in_channels, size, size):
        raise ValueError(f"generator images must have shape (N, {cfg.in_channels}, {size}, {size}) (config "
                         f"image_size={size}), got {tuple(images.shape)}")
    if features.ndim != 2 or features.shape != (len(images), cfg.condition_dim):
        raise ValueError(f"generator features must have shape ({len(images)}, {cfg.condition_dim}) (one "
                         f"condition_dim vector per image), got {tuple(features.shape)}")
    if float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("generator images must be in [0, 1]")
    if len(images) < 2:
        raise ValueError(f"generator needs at least 2 training images, got {len(images)}")


def _lr_factor(progress: float, step: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 0 over ``progress`` in [0, 1]."""
    return min(1.0, (step + 1) / max(1, warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _flip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def _run_stage(name: str, params: list, lr: float, steps: int, budget_s: float | None, cfg: TinyConfig, loss_fn: Any,
               progress: bool, ema_decay: float = 0.0) -> dict[str, float]:
    """Optimise ``loss_fn(step)`` for ``steps`` steps or ``budget_s`` seconds, whichever ends first.

    With ``ema_decay > 0`` the parameters end as their exponential moving average over the steps.
    """
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params] if ema_decay > 0 else None
    start, done, losses = time.perf_counter(), 0, []
    bar = tqdm(total=steps, desc=f"tiny generator: {name}", disable=not progress, leave=False)
    for step in range(steps):
        if budget_s is not None and step > 0 and time.perf_counter() - start >= budget_s:  # at least one step
            break
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(step / steps, step, cfg.warmup_steps)
        loss = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params, strict=True):
                    e.lerp_(p, 1 - decay)
        losses.append(float(loss.detach()))
        done += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
    bar.close()
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(params, ema, strict=True):
                p.copy_(e)
    if done < steps:
        warnings.warn(f"tiny generator {name}: time budget reached after {done}/{steps} steps", stacklevel=3)
    tail = losses[-max(1, len(losses) // 10):]
    return {f"{name}_steps": done, f"{name}_seconds": time.perf_counter() - start,
            f"{name}_final_loss": sum(tail) / len(tail)}


def train_generator(
    images: torch.Tensor, features: torch.Tensor, config: TinyConfig | dict[str, Any] | None = None,
    progress: bool = True,
) -> LatentDiffusion:
    """Train the tiny backbone on ``images (N, 3, H, W)`` in ``[0, 1]`` conditioned on ``features (N, d)``.

    Returns the trained :class:`LatentDiffusion` (eval mode, on CPU) with ``train_stats`` (a dict of steps, seconds
    and final losses per stage) attached.
    """
    cfg = TinyConfig.from_dict(config)
    images, features = images.detach().float().cpu(), features.detach().float().cpu()
    _check_inputs(images, features, cfg)
    model = build_tiny(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, crop, t0 = len(images), min(cfg.vae_crop, cfg.image_size), time.perf_counter()

    # ---- stage 1: VAE
    vae = model.vae.train()

    def vae_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (cfg.vae_batch_size,), generator=gen)
        corners = torch.randint(0, cfg.image_size - crop + 1, (len(idx), 2), generator=gen).tolist()
        pairs = zip(idx.tolist(), corners, strict=True)
        x = torch.stack([images[i, :, t : t + crop, s : s + crop] for i, (t, s) in pairs])
        if cfg.flip:
            x = _flip(x, torch.rand(len(x), generator=gen) < 0.5)
        post = vae.encode(x * 2 - 1).latent_dist
        rec = (vae.decode(post.sample(gen)).sample + 1) / 2
        kl = post.kl().mean() / math.prod(post.mean.shape[1:])
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.kl_weight * kl

    stats = _run_stage("vae", list(vae.parameters()), cfg.vae_lr, cfg.vae_steps,
                       None if cfg.time_budget_s is None else cfg.time_budget_s * cfg.vae_budget_fraction, cfg,
                       vae_loss, progress)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        views = [images, images.flip(-1)] if cfg.flip else [images]
        posts = [vae.encode(v * 2 - 1).latent_dist for v in views]
        mean = torch.stack([p.mean for p in posts])  # (V, N, C, h, w)
        std = torch.stack([p.std for p in posts])
    scale = 1.0 / float(mean.std())
    model.latent_scale.fill_(scale)
    model.vae.register_to_config(scaling_factor=scale)

    # ---- stage 2: UNet + conditioner + null tokens
    model.unet.train()
    params = [*model.unet.parameters(), *model.conditioner.parameters(), model.null_embedding]

    def unet_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (cfg.unet_batch_size,), generator=gen)
        view = torch.randint(0, len(views), (cfg.unet_batch_size,), generator=gen)
        eps = torch.randn(mean[view, idx].shape, generator=gen)
        latents = (mean[view, idx] + std[view, idx] * eps) * scale
        tokens = model.condition(features[idx])
        drop = torch.rand(len(idx), generator=gen) < cfg.cond_dropout
        tokens = torch.where(drop.view(-1, 1, 1), model.null_tokens(len(idx)), tokens)
        return model.denoising_loss(latents, tokens, generator=gen, min_snr_gamma=cfg.min_snr_gamma or None)

    remaining = None if cfg.time_budget_s is None else max(1.0, cfg.time_budget_s - (time.perf_counter() - t0))
    stats |= _run_stage("unet", params, cfg.unet_lr, cfg.unet_steps, remaining, cfg, unet_loss, progress,
                        ema_decay=cfg.ema_decay)
    model.eval().requires_grad_(False)
    stats["latent_scale"] = scale
    stats["seconds"] = time.perf_counter() - t0
    model.train_stats = stats
    return model


def cache_key(images: torch.Tensor, config: TinyConfig | dict[str, Any] | None) -> str:
    """SHA-256 (first 16 hex digits) of the training images (float32 bytes and shape) and every config value except
    the time cap (only generators that ran all their steps are cached, so the cap cannot change a cached one)."""
    cfg = TinyConfig.from_dict(config)
    h = hashlib.sha256()
    arr = images.detach().float().cpu().contiguous().numpy()
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in NOT_HASHED}
    h.update(json.dumps(recipe, sort_keys=True).encode())
    return h.hexdigest()[:16]


def load_generator(folder: str | Path) -> LatentDiffusion:
    """Load a generator saved by :func:`load_or_train_generator` from its cache folder."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / STATE_FILE).is_file():
        raise FileNotFoundError(f"no trained generator in '{folder}' (expected {CONFIG_FILE} and {STATE_FILE})")
    meta = read_json(folder / CONFIG_FILE, "tiny generator config")
    model = build_tiny(meta["config"], scaling_factor=meta["latent_scale"])
    model.load_state_dict(load_torch(folder / STATE_FILE, "tiny generator weights"))
    model.train_stats = meta.get("train_stats", {})
    return model.eval().requires_grad_(False)


def load_or_train_generator(
    images: torch.Tensor, features: torch.Tensor, config: TinyConfig | dict[str, Any] | None,
    cache_dir: str | Path, progress: bool = True,
) -> LatentDiffusion:
    """Reuse the generator cached under ``cache_dir/<cache_key>/`` or train it once and cache it atomically."""
    cfg = TinyConfig.from_dict(config)
    folder = Path(cache_dir) / cache_key(images, cfg)
    if (folder / CONFIG_FILE).is_file():
        return load_generator(folder)
    model = train_generator(images, features, cfg, progress=progress)
    stats = model.train_stats
    if stats["vae_steps"] < cfg.vae_steps or stats["unet_steps"] < cfg.unet_steps:
        warnings.warn(f"tiny generator stopped early by time_budget_s={cfg.time_budget_s} (vae "
                      f"{stats.get('vae_steps')}/{cfg.vae_steps}, unet {stats.get('unet_steps')}/{cfg.unet_steps} "
                      "steps): it is used for this run but NOT cached, so the next run trains it again", stacklevel=2)
        return model
    meta = {"config": cfg.to_dict(), "latent_scale": model.scaling_factor, "n_images": len(images),
            "train_stats": model.train_stats}
    with staging_folder(folder, CONFIG_FILE) as tmp:  # the config, written last, marks the folder complete
        torch.save(model.state_dict(), tmp / STATE_FILE)
        write_json_atomic(tmp / CONFIG_FILE, meta)
    return model
