"""Benchmark: DreamDiffusion training throughput (EEG masked-signal pre-training; fine-tuning conditioning).

Cases (``--cases``; the defaults depend on ``--device``):

- ``tiny_pretrain`` / ``paper_pretrain``: one full pre-training step of :class:`MaskedSignalAutoencoder` (``tiny`` or
  ``paper`` preset): forward with mask ratio 0.75 (encoder on CLS + kept tokens, decoder on CLS + all tokens, MSE on
  masked tokens), backward, gradient clipping at 0.8 (the pre-training config) and an AdamW step with the MAE
  parameter groups (betas 0.9 / 0.95, weight decay 0.05).
- ``paper_finetune``: the encoder + conditioning part of one DreamDiffusion fine-tuning step: the paper EEG encoder
  on all 128 tokens -> ``TokenMapper(128, 1024, 77, 768)`` (cross-attention tokens) and
  ``TokenPooler(128, 1024, 768)`` with the CLIP-alignment loss ``1 - cos`` against fixed random image embeddings;
  backward, clipping at 0.5 (the fine-tuning config) and an AdamW step over encoder, mapper and pooler. The Stable
  Diffusion UNet cannot be loaded offline, so its cost is NOT measured: its gradient with respect to the 77 x 768
  tokens is stood in for by a fixed random tensor (surrogate loss ``sum(tokens * g)``), so that the mapper's backward
  runs as in real training.

Defaults: CPU runs ``tiny_pretrain`` at batch 64 and ``paper_pretrain`` at batch 4 in float32 (foreach AdamW) and
prints their samples/s ratio; CUDA runs ``paper_pretrain`` at batch 100 (the reference batch) and ``paper_finetune``
at batch 25 in bf16 autocast with fused AdamW. Inputs are random tensors made once on the device (data loading is
not measured).

Timing: after warm-up (at least ``--warmup`` steps and ``--warmup_s`` seconds), one step is timed to choose
``k`` steps per repeat (at least ``--min_repeat_s`` seconds); each of ``--repeats`` repeats times ``k`` consecutive
steps with ``time.perf_counter`` between device synchronisations (``torch.cuda.synchronize`` on CUDA). Reported: the
median step time over repeats (and the min-max range), samples/s = batch / median step time.

FLOPs per step, analytic (matmul-like operations only; 2 FLOPs per multiply-add; bias adds, norms, GELU, softmax,
the loss and the optimiser are not counted)::

    F = sum over weight matrices W of  6 * |W| * n_W          (forward 2 + input grad 2 + weight grad 2)
      - 2 * |W_patch| * L                                      (the patch embedding's input, the EEG, needs no grad)
      + sum over attention layers of  12 * n_l**2 * w_l        (QK^T and AV: 4 n^2 w forward, 8 n^2 w backward)

per sample, times the batch, where ``n_W`` is the number of tokens (positions) the matrix is applied to, ``n_l`` the
sequence length of attention layer ``l`` and ``w_l`` its width. Pre-training: ``L = n_times / patch_size`` tokens;
the patch embedding (``C * patch_size * D`` weights) runs on all ``L`` tokens, the encoder's ``depth`` blocks
(``4 D^2 + 2 D H`` matmul weights each, ``H = mlp_ratio * D``) and ``decoder_embed`` on ``n_e = 1 + int(L * (1 -
mask_ratio))`` tokens, the decoder blocks and ``decoder_pred`` on ``n_d = 1 + L`` tokens. Fine-tuning: the encoder
runs on ``L`` tokens (no CLS); the mapper's 1x1 convolutions over the token axis are matrices applied at ``D``
positions, its ``dim_mapper`` at 77 tokens, the pooler's convolution at ``D`` positions and its projection once.
Cross-check: one extra (untimed) step under ``torch.utils.flop_counter.FlopCounterMode``; on the CPU that step uses
the math attention backend, since the counter has no formula for the CPU flash-attention kernel.

MFU = analytic FLOPs per step / median step time / (``--peak_tflops`` x 1e12); the peak defaults to 989 TFLOP/s
(H100 SXM dense bf16) on CUDA and is not applied on the CPU unless given.

Examples::

    .venv/bin/python bench/eeg_pretrain_throughput.py                     # CPU, 2 threads, 1-2 min
    .venv/bin/python bench/eeg_pretrain_throughput.py --device cuda       # GPU: paper b100 + fine-tuning b25, bf16
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
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import harness  # noqa: E402
from brain2img.diffusion.token_maps import TokenMapper, TokenPooler  # noqa: E402
from brain2img.encoders.mae1d import MAE1DConfig, MaskedSignalAutoencoder, SignalEncoder, eeg_mae_config  # noqa: E402
from brain2img.optim import decay_groups  # noqa: E402

CASES = ("tiny_pretrain", "paper_pretrain", "paper_finetune")
DEFAULT_CASES = {"cpu": ("tiny_pretrain", "paper_pretrain"), "cuda": ("paper_pretrain", "paper_finetune")}
DEFAULT_BATCH = {"cpu": {"tiny_pretrain": 64, "paper_pretrain": 4, "paper_finetune": 2},
                 "cuda": {"tiny_pretrain": 64, "paper_pretrain": 100, "paper_finetune": 25}}
H100_SXM_BF16_DENSE_TFLOPS = 989.0
MASK_RATIO = 0.75
SD_TOKENS, SD_TOKEN_DIM, CLIP_DIM = 77, 768, 768  # SD 1.5 cross-attention tokens; CLIP ViT-L/14 image embedding
PRETRAIN_CLIP, FINETUNE_CLIP = 0.8, 0.5  # gradient_clip_val of conf/dreamdiffusion/{pretrain,finetune}_simulated.yaml
StepFn = Callable[[], torch.Tensor]


@dataclass
class Case:
    """One benchmarked training step.

    Attributes:
        name: case name (a key of ``CASES``).
        preset: EEG encoder preset.
        batch: samples per step.
        step: runs one full training step (no host synchronisation inside).
        count_step: one forward + backward (no optimiser step), for the FLOP counter.
        flops: analytic FLOPs of one step.
        params: trainable parameters.
        tokens: description of the sequence lengths.
    """

    name: str
    preset: str
    batch: int
    step: Callable[[], torch.Tensor]
    count_step: Callable[[], torch.Tensor]
    flops: int
    params: int
    tokens: str


def add_step_args(ap: argparse.ArgumentParser) -> None:
    """The options every training-step benchmark shares (precision, optimiser, clipping, threads, timing, MFU)."""
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="fp32, or bf16 autocast (default: bf16 on cuda, fp32 on cpu)")
    ap.add_argument("--fused", action=argparse.BooleanOptionalAction, default=None,
                    help="fused AdamW (default: on for cuda, off (foreach) for cpu)")
    ap.add_argument("--no_clip", action="store_true", help="skip gradient-norm clipping")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (torch.set_num_threads)")
    harness.add_timing_args(ap, "case")
    ap.add_argument("--peak_tflops", type=float, default=None,
                    help=f"peak dense TFLOP/s for MFU (default {H100_SXM_BF16_DENSE_TFLOPS:g} = H100/H200 SXM bf16 "
                         "on cuda; no MFU on cpu unless given)")
    ap.add_argument("--no_flop_counter", action="store_true", help="skip the FlopCounterMode cross-check step")
    ap.add_argument("--seed", type=int, default=0)


def check_positive(ap: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """``ap.error`` for any of ``names`` set below 1."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name} must be >= 1, got {value}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=None,
                    help="steps to time (default: tiny_pretrain paper_pretrain on cpu, paper_pretrain "
                         "paper_finetune on cuda)")
    ap.add_argument("--tiny_batch", type=int, default=None, help="batch of tiny_pretrain (default 64)")
    ap.add_argument("--paper_batch", type=int, default=None, help="batch of paper_pretrain (cpu 4, cuda 100)")
    ap.add_argument("--finetune_batch", type=int, default=None, help="batch of paper_finetune (cpu 2, cuda 25)")
    add_step_args(ap)
    args = ap.parse_args(argv)
    check_positive(ap, args, ("tiny_batch", "paper_batch", "finetune_batch", "threads", "repeats"))
    return args


# ---------------------------------------------------------------------------------------------------- FLOP counting
def _block_weights(width: int, mlp_ratio: float) -> int:
    """Matmul weights of one ViT block: qkv 3 w^2, proj w^2, fc1 + fc2 2 w h."""
    return 4 * width * width + 2 * width * int(width * mlp_ratio)


def pretrain_flops(cfg: MAE1DConfig, batch: int, mask_ratio: float = MASK_RATIO) -> int:
    """Analytic FLOPs of one masked-autoencoder training step (forward + backward); see the module docstring."""
    length = cfg.n_tokens
    n_enc, n_dec = 1 + int(length * (1 - mask_ratio)), 1 + length
    patch = cfg.n_channels * cfg.patch_size * cfg.embed_dim
    flops = 4 * patch * length
    flops += 6 * cfg.depth * _block_weights(cfg.embed_dim, cfg.mlp_ratio) * n_enc
    flops += 6 * cfg.embed_dim * cfg.decoder_embed_dim * n_enc
    flops += 6 * cfg.decoder_depth * _block_weights(cfg.decoder_embed_dim, cfg.mlp_ratio) * n_dec
    flops += 6 * cfg.decoder_embed_dim * cfg.patch_size * cfg.n_channels * n_dec
    flops += 12 * (cfg.depth * n_enc**2 * cfg.embed_dim + cfg.decoder_depth * n_dec**2 * cfg.decoder_embed_dim)
    return batch * flops


def finetune_flops(cfg: MAE1DConfig, batch: int, n_out: int = SD_TOKENS, out_dim: int = SD_TOKEN_DIM,
                   clip_dim: int = CLIP_DIM) -> int:
    """Analytic FLOPs of the encoder + TokenMapper + TokenPooler forward + backward; see the module docstring."""
    length, width = cfg.n_tokens, cfg.embed_dim
    hidden = max(1, length // 2)
    flops = 4 * cfg.n_channels * cfg.patch_size * width * length
    flops += 6 * cfg.depth * _block_weights(width, cfg.mlp_ratio) * length
    flops += 12 * cfg.depth * length**2 * width
    flops += 6 * (length * hidden + hidden * n_out) * width  # channel_mapper: 1x1 convs at `width` positions
    flops += 6 * width * out_dim * n_out  # dim_mapper
    flops += 6 * length * width + 6 * width * clip_dim  # TokenPooler: token_pool conv, proj on one vector
    return batch * flops


# ---------------------------------------------------------------------------------------------------- cases
def _autocast(device: torch.device, precision: str) -> AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _training_steps(forward_backward: Callable[[], torch.Tensor], params: list[nn.Parameter],
                    opt: torch.optim.Optimizer, clip: float | None) -> tuple[StepFn, StepFn]:
    """The full step (zero grads, forward + backward, optional clipping, optimiser step) and the counted step (zero
    grads, forward + backward), both returning the loss."""

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = forward_backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        opt.step()
        return loss

    def count_step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        return forward_backward()

    return step, count_step


def pretrain_case(name: str, preset: str, batch: int, device: torch.device, precision: str, fused: bool,
                  clip: bool) -> Case:
    """A MaskedSignalAutoencoder pre-training step (MAE groups, AdamW betas 0.9 / 0.95, weight decay 0.05)."""
    cfg = eeg_mae_config(preset, mask_ratio=MASK_RATIO)
    model = MaskedSignalAutoencoder(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(decay_groups(model.named_parameters(), 0.05), lr=2.5e-4, betas=(0.9, 0.95), fused=fused)
    x = torch.randn(batch, cfg.n_channels, cfg.n_times, device=device)

    def forward_backward() -> torch.Tensor:
        with _autocast(device, precision):
            loss, _, _ = model(x)
        loss.backward()
        return loss

    step, count_step = _training_steps(forward_backward, params, opt, PRETRAIN_CLIP if clip else None)
    n_enc = 1 + int(cfg.n_tokens * (1 - MASK_RATIO))
    return Case(name, preset, batch, step, count_step, pretrain_flops(cfg, batch), sum(p.numel() for p in params),
                f"enc {n_enc}, dec {cfg.n_tokens + 1}")


def finetune_case(batch: int, device: torch.device, precision: str, fused: bool, clip: bool, seed: int) -> Case:
    """Encoder (paper) -> TokenMapper + TokenPooler with the CLIP loss and a stand-in UNet token gradient."""
    cfg = eeg_mae_config("paper")
    encoder = SignalEncoder(cfg)
    mapper = TokenMapper(cfg.n_tokens, cfg.embed_dim, SD_TOKENS, SD_TOKEN_DIM)
    pooler = TokenPooler(cfg.n_tokens, cfg.embed_dim, CLIP_DIM)
    model = nn.ModuleDict({"encoder": encoder, "mapper": mapper, "pooler": pooler}).to(device).train()
    # the reference encoder's unused mask_token never gets a gradient; AdamW skips it
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("mask_token")]
    opt = torch.optim.AdamW(params, lr=5.3e-5, weight_decay=0.01, fused=fused)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    x = torch.randn(batch, cfg.n_channels, cfg.n_times, device=device, generator=gen)
    clip_target = torch.randn(batch, CLIP_DIM, device=device, generator=gen)
    unet_grad = torch.randn(batch, SD_TOKENS, SD_TOKEN_DIM, device=device, generator=gen) * 1e-4

    def forward_backward() -> torch.Tensor:
        with _autocast(device, precision):
            hidden = encoder(x)
            tokens = mapper(hidden)
            clip_pred = pooler(hidden)
        clip_loss = 1.0 - F.cosine_similarity(clip_pred.float(), clip_target, dim=-1).mean()
        loss = clip_loss + (tokens.float() * unet_grad).sum()  # d loss / d tokens = the stand-in UNet gradient
        loss.backward()
        return loss

    step, count_step = _training_steps(forward_backward, params, opt, FINETUNE_CLIP if clip else None)
    return Case("paper_finetune", "paper", batch, step, count_step, finetune_flops(cfg, batch),
                sum(p.numel() for p in params), f"enc {cfg.n_tokens} -> {SD_TOKENS}x{SD_TOKEN_DIM} + 1x{CLIP_DIM}")


def build_case(name: str, args: argparse.Namespace, device: torch.device) -> Case:
    torch.manual_seed(args.seed)
    if name == "tiny_pretrain":
        return pretrain_case(name, "tiny", args.tiny_batch, device, args.precision, args.fused, not args.no_clip)
    if name == "paper_pretrain":
        return pretrain_case(name, "paper", args.paper_batch, device, args.precision, args.fused, not args.no_clip)
    return finetune_case(args.finetune_batch, device, args.precision, args.fused, not args.no_clip, args.seed)


# ---------------------------------------------------------------------------------------------------- timing
def counted_flops(case: Case, device: torch.device) -> int:
    """FLOPs of one forward + backward by ``FlopCounterMode`` (math attention on the CPU, see the docstring)."""
    backend = sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()
    counter = FlopCounterMode(display=False)
    with backend, counter:
        case.count_step()
    harness.sync(device)
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------------------------- report
def resolve_defaults(args: argparse.Namespace, device: torch.device) -> None:
    kind = device.type
    args.cases = tuple(args.cases or DEFAULT_CASES[kind])
    for flag, case in (("tiny_batch", "tiny_pretrain"), ("paper_batch", "paper_pretrain"),
                       ("finetune_batch", "paper_finetune")):
        if getattr(args, flag) is None:
            setattr(args, flag, DEFAULT_BATCH[kind][case])
    args.precision = args.precision or ("bf16" if kind == "cuda" else "fp32")
    args.fused = (kind == "cuda") if args.fused is None else args.fused
    if args.peak_tflops is None and kind == "cuda":
        args.peak_tflops = H100_SXM_BF16_DENSE_TFLOPS


def check_bf16(device: torch.device, precision: str) -> None:
    """Fail clearly when bf16 is asked of a GPU without it."""
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise SystemExit(f"--device {device} ({torch.cuda.get_device_name(device)}) does not support bf16; "
                         "use --precision fp32")


@dataclass
class Result:
    """Timings of one case (``per_step``: seconds per step of each repeat; ``counted``: FlopCounterMode FLOPs)."""

    name: str
    batch: int
    params: int
    tokens: str
    flops: int
    per_step: list[float]
    steps_per_repeat: int
    counted: int | None
    loss: float
    peak_mem_gib: float | None

    @property
    def median_s(self) -> float:
        return statistics.median(self.per_step)

    @property
    def samples_per_s(self) -> float:
        return self.batch / self.median_s


def report(results: list[Result], peak_tflops: float | None) -> None:
    """Print the Markdown table, the FLOP cross-check and the tiny / paper ratio."""
    print()
    harness.print_table_header([("case", "<15"), ("batch", ">5"), ("params", ">7"), ("tokens/sample", "<30"),
                                ("step ms (median)", ">16"), ("min-max ms", ">17"), ("samples/s", ">9"),
                                ("GFLOP/step", ">10"), ("TFLOP/s", ">7"), ("MFU", ">6")])
    for r in results:
        tflops = r.flops / r.median_s / 1e12
        mfu = f"{tflops / peak_tflops:6.1%}" if peak_tflops else f"{'n/a':>6}"
        harness.print_table_row([f"{r.name:<15}", f"{r.batch:>5}", f"{r.params / 1e6:6.1f}M", f"{r.tokens:<30}",
                                 f"{r.median_s * 1e3:16.2f}", f"{harness.min_max(r.per_step, 1e3):>17}",
                                 f"{r.samples_per_s:9.1f}", f"{r.flops / 1e9:10.4g}", f"{tflops:7.4g}", mfu])

    print("\nFLOPs per step, analytic vs torch.utils.flop_counter.FlopCounterMode (one forward + backward):")
    for r in results:
        counted = "skipped" if r.counted is None else (
            f"{r.counted / 1e9:.4g} GFLOP (analytic / counted = {r.flops / r.counted:.4f})")
        mem = "" if r.peak_mem_gib is None else f", peak memory {r.peak_mem_gib:.2f} GiB"
        print(f"  {r.name}: analytic {r.flops / 1e9:.4g} GFLOP, counted {counted}; {r.steps_per_repeat} step(s) per "
              f"repeat, last loss {r.loss:.4f}{mem}")

    by_name = {r.name: r for r in results}
    if "tiny_pretrain" in by_name and "paper_pretrain" in by_name:
        tiny, paper = by_name["tiny_pretrain"], by_name["paper_pretrain"]
        flop_ratio = (paper.flops / paper.batch) / (tiny.flops / tiny.batch)
        print(f"\nratio: tiny_pretrain / paper_pretrain samples/s = {tiny.samples_per_s / paper.samples_per_s:.1f} "
              f"(the paper step needs {flop_ratio:.0f}x the FLOPs per sample)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = harness.parse_device(args.device)
    harness.check_device(device)  # first: the per-device defaults know only cpu and cuda
    resolve_defaults(args, device)
    check_bf16(device, args.precision)
    torch.set_num_threads(args.threads)
    device = harness.use_device(device)

    harness.print_header(device, argv)
    print(f"settings: precision={args.precision} fused_adamw={args.fused} grad_clip={not args.no_clip} "
          f"mask_ratio={MASK_RATIO} {harness.timing_settings(args)}; peak="
          f"{f'{args.peak_tflops:g} TFLOP/s' if args.peak_tflops else 'n/a (no MFU)'}")
    if "paper_finetune" in args.cases:
        print("note: paper_finetune = EEG encoder + TokenMapper + TokenPooler (CLIP loss) only; the Stable Diffusion "
              "UNet is not loaded (offline) and its cost is NOT measured (a fixed random tensor stands in for its "
              "gradient w.r.t. the conditioning tokens)")

    results = []
    for name in args.cases:
        case = build_case(name, args, device)
        harness.reset_peak_memory(device)
        per_step, k, loss = harness.time_steps(case.step, device, warmup=args.warmup, warmup_s=args.warmup_s,
                                               repeats=args.repeats, min_repeat_s=args.min_repeat_s)
        counted = None if args.no_flop_counter else counted_flops(case, device)
        mem = harness.peak_memory_gib(device)
        results.append(Result(case.name, case.batch, case.params, case.tokens, case.flops, per_step, k, counted,
                              loss, mem))
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(results, args.peak_tflops)
    harness.print_load_average("end")


if __name__ == "__main__":
    main()
