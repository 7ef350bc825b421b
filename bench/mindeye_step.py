"""Benchmark: one MindEye1 ``BrainNetwork`` (voxel2clip + projector) training step: precision and optimiser variants.

Each timed step: forward of :class:`BrainNetwork` on random voxels ``(batch, n_voxels)``; SoftCLIP loss
(:func:`brain2img.losses.soft_clip_loss`, temperature ``--temp``, default 0.005) between the projector output
``(batch, clip_tokens, clip_dim)`` and fixed random CLIP-like targets normalised by their CLS token's norm (MindEye's
``clip_target / ||clip_target[:, 0]||``); backward; AdamW step (lr 3e-4, weight decay 1e-2 except biases and norms, as
MindEye1). Inputs and targets are made once on the device: data loading is not measured.

Variants (``--variants``, compared side by side in one run):

- ``fp16_autocast_foreach``: ``torch.autocast`` float16 + ``GradScaler`` + foreach AdamW (the reference's setting:
  ``Accelerator(mixed_precision='fp16')``).
- ``bf16_autocast_fused``: ``torch.autocast`` bfloat16 + fused AdamW (fp32 parameters, gradients and moments).
- ``bf16_weights_fused``: ``model.to(torch.bfloat16)`` + fused AdamW (parameters, gradients and moments all bf16; no
  fp32 master copy, so this is a speed bound, not a recipe that trains identically).
- ``bf16_autocast_fused_compile``: as ``bf16_autocast_fused`` with ``torch.compile(model)`` (optimiser not compiled).
- ``fp32_foreach``: no autocast, foreach AdamW (the CPU default).

Timing: after warm-up (at least ``--warmup`` steps and ``--warmup_s`` seconds), one step is timed to choose ``k`` steps
per repeat (at least ``--min_repeat_s`` seconds); each of ``--repeats`` repeats times ``k`` consecutive steps between
device synchronisations (``torch.cuda.synchronize`` on CUDA). Reported: median step time (and min-max).

Rooflines and utilisation:

- AdamW memory roofline: the optimiser alone must read and write every parameter, read its gradient and read and
  write both moments: ``bytes/param = 2 s_param + s_grad + 4 s_moment`` (fp32 everywhere: 8 + 4 + 16 = 28 bytes), so
  ``roofline_ms = bytes/param x params / (--hbm_tbps x 1e12)`` (28 B x 947.6M / 3.0 TB/s = 8.84 ms for the paper
  model). Printed per variant from the actual dtypes (bf16 weights: 14 B/param), with ``% of roofline =
  roofline_ms / step_ms``. It ignores the forward/backward's own weight traffic, so 100% is not reachable.
- MFU (issue formula) = ``6 x params x batch / step_s / (--peak_tflops x 1e12)``.
- MFU (matmul FLOPs) uses the analytic matmul FLOPs instead: the backbone's matrices once per sample (6 FLOPs per
  weight, 4 for ``lin0`` whose input needs no gradient) and the projector's three matrices once per *token*
  (257 x per sample), which is about 2/3 of the step's FLOPs and which ``6 x params x batch`` does not see.

Examples::

    .venv/bin/python bench/mindeye_step.py                      # CPU: small model (see --preset small), fp32
    .venv/bin/python bench/mindeye_step.py --device cuda        # GPU: paper model, batch 32, variants a-c
    .venv/bin/python bench/mindeye_step.py --device cuda --variants fp16_autocast_foreach bf16_autocast_fused \\
        bf16_weights_fused bf16_autocast_fused_compile --hbm_tbps 3.35      # H100 SXM HBM3 bandwidth
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import harness  # noqa: E402
from brain2img.encoders.mindeye import BrainNetwork, MindEyeConfig, mindeye_config  # noqa: E402
from brain2img.losses import soft_clip_loss  # noqa: E402
from brain2img.optim import decay_groups  # noqa: E402

PAPER_PARAMS = 947_579_904  # MindEye1 subject-1 BrainNetwork + projector
VARIANTS = ("fp16_autocast_foreach", "bf16_autocast_fused", "bf16_weights_fused", "bf16_autocast_fused_compile",
            "fp32_foreach")
DEFAULT_VARIANTS = {"cuda": ("fp16_autocast_foreach", "bf16_autocast_fused", "bf16_weights_fused"),
                    "cpu": ("fp32_foreach",)}
PRESETS = {
    "paper": {},  # mindeye_config("paper"): 15,724 voxels -> 257 x 768, h 4096, 4 blocks, projector 2048
    "small": {"n_voxels": 1500, "h": 512, "n_blocks": 2, "clip_tokens": 5, "clip_dim": 1280, "proj_hidden": 512},
}
LR, WEIGHT_DECAY = 3e-4, 1e-2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None,
                    help="model size: paper (MindEye1 subject 1; default on cuda) or small (default on cpu: 1,500 "
                         "voxels, h 512, 2 blocks, 5 tokens x 1280, projector 512)")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                    help="default: fp16_autocast_foreach bf16_autocast_fused bf16_weights_fused on cuda, "
                         "fp32_foreach on cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--temp", type=float, default=0.005, help="SoftCLIP temperature")
    ap.add_argument("--hbm_tbps", type=float, default=None,
                    help="memory bandwidth in TB/s for the AdamW roofline (default on cuda 3.0 as in the issue; "
                         "H100 SXM 3.35, H100 PCIe 2.0, H200 4.8; not applied on cpu unless given)")
    ap.add_argument("--peak_tflops", type=float, default=None,
                    help="peak dense TFLOP/s for MFU (default on cuda 989 = H100 SXM bf16 dense; not applied on cpu "
                         "unless given)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    harness.add_timing_args(ap, "variant")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("batch", "threads", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("temp", "hbm_tbps", "peak_tflops"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            ap.error(f"--{name} must be > 0, got {getattr(args, name)}")
    return args


# ---------------------------------------------------------------------------------------------------- model facts
def matmul_flops(cfg: MindEyeConfig, batch: int) -> int:
    """Analytic matmul FLOPs of one forward + backward (see the module docstring)."""
    backbone = cfg.n_blocks * cfg.h * cfg.h + cfg.h * cfg.clip_tokens * cfg.clip_dim
    projector = cfg.clip_dim * cfg.proj_hidden * 2 + cfg.proj_hidden * cfg.proj_hidden
    per_sample = 4 * cfg.n_voxels * cfg.h + 6 * backbone + 6 * projector * cfg.clip_tokens
    return batch * per_sample


def adamw_bytes_per_param(model: nn.Module, opt: torch.optim.Optimizer) -> float:
    """``2 s_param + s_grad + 4 s_moment`` averaged over parameters (gradients have the parameters' dtype)."""
    total, count = 0, 0
    for p in model.parameters():
        moment = opt.state[p]["exp_avg"].element_size() if p in opt.state else 4
        total += p.numel() * (3 * p.element_size() + 4 * moment)
        count += p.numel()
    return total / count


# ---------------------------------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One benchmarked training step (``step`` runs it fully, without host synchronisation inside)."""

    name: str
    step: Callable[[], torch.Tensor]
    model: nn.Module
    opt: torch.optim.Optimizer


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def build_variant(name: str, cfg: MindEyeConfig, args: argparse.Namespace, device: torch.device) -> Variant:
    """Model, optimiser, fixed inputs and the step function of one variant."""
    torch.manual_seed(args.seed)
    with device:  # initialise on the device (the paper model is 3.8 GB in fp32)
        model = BrainNetwork.from_config(cfg).train()
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(name.split("_")[0])
    if name == "bf16_weights_fused":
        model = model.to(torch.bfloat16)
        autocast_dtype = None
    fused = "fused" in name
    opt = torch.optim.AdamW(decay_groups(model.named_parameters(), WEIGHT_DECAY), lr=LR, fused=fused,
                            foreach=None if fused else True)
    scaler = torch.amp.GradScaler(device.type) if name.startswith("fp16") else None
    forward = torch.compile(model) if name.endswith("compile") else model

    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    in_dtype = torch.bfloat16 if name == "bf16_weights_fused" else torch.float32
    voxels = torch.randn(args.batch, cfg.n_voxels, device=device, generator=gen).to(in_dtype)
    target = torch.randn(args.batch, cfg.clip_tokens, cfg.clip_dim, device=device, generator=gen)
    target = target / target[:, 0].norm(dim=-1)[:, None, None]  # MindEye: normalise by the CLS token's norm

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, autocast_dtype):
            _, proj = forward(voxels)
        loss = soft_clip_loss(proj.float(), target, args.temp)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return loss

    return Variant(name, step, model, opt)


# ---------------------------------------------------------------------------------------------------- report
def check_device(device: torch.device, variants: tuple[str, ...]) -> None:
    """Fail clearly when the requested device cannot run (see :func:`harness.check_device`) the requested variants."""
    harness.check_device(device)
    if device.type == "cuda" and any(v.startswith("bf16") for v in variants) and not torch.cuda.is_bf16_supported():
        raise SystemExit(f"--device {device} ({torch.cuda.get_device_name(device)}) does not support bf16; "
                         "choose --variants fp16_autocast_foreach fp32_foreach")


@dataclass
class Result:
    """Timings of one variant."""

    name: str
    per_step: list[float]
    steps_per_repeat: int
    loss: float
    bytes_per_param: float
    peak_mem_gib: float | None

    @property
    def median_s(self) -> float:
        return statistics.median(self.per_step)


def report(results: list[Result], params: int, flops: int, args: argparse.Namespace) -> None:
    """Print the Markdown table and the ratios to the first variant."""
    print()
    harness.print_table_header([("variant", "<28"), ("step ms (median)", ">16"), ("min-max ms", ">15"),
                                ("B/param", ">7"), ("roofline ms", ">11"), ("% of roofline", ">13"),
                                ("MFU 6PB", ">7"), ("MFU matmul", ">10"), ("peak GiB", ">8")])
    for r in results:
        roof, roof_pct, mfu_6pb, mfu_mm = "n/a", "n/a", "n/a", "n/a"
        if args.hbm_tbps:
            roof_s = r.bytes_per_param * params / (args.hbm_tbps * 1e12)
            roof, roof_pct = f"{roof_s * 1e3:.2f}", f"{roof_s / r.median_s:.1%}"
        if args.peak_tflops:
            mfu_6pb = f"{6 * params * args.batch / r.median_s / (args.peak_tflops * 1e12):.2%}"
            mfu_mm = f"{flops / r.median_s / (args.peak_tflops * 1e12):.2%}"
        mem = "n/a" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.2f}"
        harness.print_table_row([f"{r.name:<28}", f"{r.median_s * 1e3:16.2f}",
                                 f"{harness.min_max(r.per_step, 1e3):>15}", f"{r.bytes_per_param:7.1f}",
                                 f"{roof:>11}", f"{roof_pct:>13}", f"{mfu_6pb:>7}", f"{mfu_mm:>10}", f"{mem:>8}"])
    print()
    for r in results:
        print(f"  {r.name}: {r.steps_per_repeat} step(s) per repeat, last loss {r.loss:.4f}")
    if len(results) > 1:
        base = results[0]
        print("\nspeed-up over " + base.name + ": " + ", ".join(
            f"{r.name} {base.median_s / r.median_s:.2f}x" for r in results[1:]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = harness.parse_device(args.device)
    args.variants = tuple(args.variants or DEFAULT_VARIANTS.get(device.type, ()))
    args.preset = args.preset or ("paper" if device.type == "cuda" else "small")
    check_device(device, args.variants)
    if device.type == "cuda":
        args.hbm_tbps = args.hbm_tbps or 3.0
        args.peak_tflops = args.peak_tflops or 989.0
    torch.set_num_threads(args.threads)
    device = harness.use_device(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # MindEye1 turns TF32 on (fp32 matmuls outside autocast)
        torch.backends.cudnn.allow_tf32 = True

    cfg = mindeye_config("paper", **PRESETS[args.preset])
    with torch.device("meta"):  # count without allocating (3.8 GB in fp32 for the paper model)
        params = sum(p.numel() for p in BrainNetwork.from_config(cfg).parameters())
    if args.preset == "paper" and params != PAPER_PARAMS:
        raise SystemExit(f"paper BrainNetwork has {params:,} parameters, expected {PAPER_PARAMS:,}")
    flops = matmul_flops(cfg, args.batch)
    harness.print_header(device, argv)
    print(f"model: preset={args.preset} n_voxels={cfg.n_voxels} h={cfg.h} n_blocks={cfg.n_blocks} tokens="
          f"{cfg.clip_tokens}x{cfg.clip_dim} proj_hidden={cfg.proj_hidden}; {params:,} parameters; batch {args.batch}")
    print(f"settings: SoftCLIP temp {args.temp:g}, AdamW lr {LR:g} wd {WEIGHT_DECAY:g}; "
          f"{harness.timing_settings(args)}; "
          f"memory bandwidth {args.hbm_tbps or 'n/a'} TB/s, peak {args.peak_tflops or 'n/a'} TFLOP/s")
    print(f"FLOPs/step: 6 x params x batch = {6 * params * args.batch / 1e9:.1f} GFLOP; analytic matmul FLOPs "
          f"(projector per token) = {flops / 1e9:.1f} GFLOP")
    if args.hbm_tbps:
        print(f"AdamW roofline (fp32, 28 B/param): {28 * params / (args.hbm_tbps * 1e12) * 1e3:.2f} ms")

    results = []
    for name in args.variants:
        v = build_variant(name, cfg, args, device)
        harness.reset_peak_memory(device)
        per_step, k, loss = harness.time_steps(v.step, device, warmup=args.warmup, warmup_s=args.warmup_s,
                                               repeats=args.repeats, min_repeat_s=args.min_repeat_s)
        mem = harness.peak_memory_gib(device)
        results.append(Result(name, per_step, k, loss, adamw_bytes_per_param(v.model, v.opt), mem))
        del v
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(results, params, flops, args)
    harness.print_load_average("end")


if __name__ == "__main__":
    main()
