"""Benchmark: one DC-MAE stage-1 training step (fMRI masked autoencoder with the double-contrast loss).

The step is :meth:`brain2img.methods.fmri_pretrain.FMRIPretraining.losses` with the reference's effective weights:
two independent maskings (ratio 0.75) of each voxel vector, each encoded (CLS + kept tokens) and decoded (CLS + all
tokens); ``0.5 * (0.5 * InfoNCE(rec_1, padded input) + 0.5 * InfoNCE(rec_1, rec_2))`` (tau 0.1, in-batch negatives,
one device: no gather); the masked MSE is computed at weight 0 (forward only); backward, gradient clipping at 0.8
and AdamW (betas 0.9 / 0.95, weight decay 0.05 over :func:`brain2img.optim.decay_groups`; lr 2.5e-4).

Cases (``--cases``; all three by default), models from :func:`brain2img.encoders.fmri_mae.fmri_mae_config`:

- ``tiny``: ``tiny`` preset (width 64, 2 blocks; decoder 32 x 1) on 1500 voxels -> 1504 padded (94 tokens), batch
  256: ``conf/dcmae/pretrain_simulated.yaml`` on the simulated benchmark's 1500-voxel subject.
- ``paper_sbj3``: ``paper`` preset (16-voxel patches, encoder 1024 / 24 blocks / 16 heads, mlp ratio 1.0, decoder
  512 / 8 / 16) on GOD sbj_3's 5355 voxels -> 5360 padded (335 tokens); batch 250 on CUDA (the DC-MAE README
  batch), 4 on the CPU.
- ``paper_hcp``: ``paper`` preset on 4191 voxels -> 4192 padded (262 tokens; ``padded_length`` adds
  ``16 - n % 16`` voxels, a whole patch when ``n`` is divisible, so 4192 itself would give 4208); batch 250 on CUDA,
  2 on the CPU.

Defaults: CPU float32 with foreach AdamW; CUDA bf16 autocast (the InfoNCE and the MSE run in float32 inside
``losses``) with fused AdamW, MFU against ``--peak_tflops`` and peak memory (``torch.cuda.max_memory_allocated``).
Inputs are random voxel vectors made once on the device; masks are drawn every step (data loading not measured).
Timing is :func:`bench.harness.time_steps`, as in ``bench/eeg_pretrain_throughput.py``: median step time over
``--repeats`` repeats of ``k`` steps (and the min-max range), samples/s = batch / median.

FLOPs per step, analytic (matmul-like only, 2 per multiply-add; norms, softmax, GELU, the MSE, the optimiser are not
counted)::

    F = 2 * P(cfg, B)                            two maskings; P = eeg_pretrain_throughput.pretrain_flops
      + 4 * B**2 * T                             InfoNCE(rec_1, input): logits fwd 2 B^2 T, grad of rec_1 2 B^2 T
      + 6 * B**2 * T                             InfoNCE(rec_1, rec_2): fwd 2 B^2 T, grads of both sides 4 B^2 T

with ``T`` the padded voxel count. ``P`` is the EEG MAE formula, which holds here with ``n_channels = 1`` and
``n_times = T``: the patch embedding ``Conv1d(1 -> D, 16, 16)`` runs forward + weight grad only (4 x 16 D x L; the
padded input needs no grad), the encoder on ``1 + int(0.25 L)`` tokens, the decoder on ``1 + L``. The masked-MSE
path adds no matmul. The padded input is a constant, so the self term has no key gradient: ``10 B^2 T`` in all,
not ``12 B^2 T``. Cross-check: one untimed forward + backward under ``torch.utils.flop_counter.FlopCounterMode``
(math attention on the CPU).

Examples::

    .venv/bin/python bench/fmri_pretrain_step.py --threads 1 --warmup 1 --warmup_s 0 --repeats 3 --min_repeat_s 0
    .venv/bin/python bench/fmri_pretrain_step.py --cases tiny --threads 1         # the tiny step only, seconds
    .venv/bin/python bench/fmri_pretrain_step.py --device cuda                    # GPU: tiny b256, paper b250, bf16
    .venv/bin/python bench/fmri_pretrain_step.py --device cuda --sbj3_batch 100 --peak_tflops 756   # other peak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import eeg_pretrain_throughput as eeg  # noqa: E402

from bench import harness  # noqa: E402
from brain2img.encoders.fmri_mae import FMRIMAEConfig, fmri_mae_config  # noqa: E402
from brain2img.methods.fmri_pretrain import FMRIPretraining  # noqa: E402
from brain2img.optim import decay_groups  # noqa: E402

CASES = {"tiny": ("tiny", 1500), "paper_sbj3": ("paper", 5355), "paper_hcp": ("paper", 4191)}  # preset, n_voxels
DEFAULT_BATCH = {"cpu": {"tiny": 256, "paper_sbj3": 4, "paper_hcp": 2},
                 "cuda": {"tiny": 256, "paper_sbj3": 250, "paper_hcp": 250}}
BATCH_FLAGS = {"tiny": "tiny_batch", "paper_sbj3": "sbj3_batch", "paper_hcp": "hcp_batch"}
MASK_RATIO, TEMPERATURE, LR = 0.75, 0.1, 2.5e-4
LOSS_WEIGHTS = {"mask_loss_weight": 0.0, "contrastive_weight": 0.5, "self_contrast_weight": 0.5,
                "cross_contrast_weight": 0.5}  # the reference's effective weights (conf/dcmae/pretrain_simulated.yaml)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--cases", nargs="+", choices=tuple(CASES), default=tuple(CASES), help="steps to time")
    ap.add_argument("--tiny_batch", type=int, default=None, help="batch of tiny (default 256)")
    ap.add_argument("--sbj3_batch", type=int, default=None, help="batch of paper_sbj3 (cpu 4, cuda 250)")
    ap.add_argument("--hcp_batch", type=int, default=None, help="batch of paper_hcp (cpu 2, cuda 250)")
    eeg.add_step_args(ap)
    args = ap.parse_args(argv)
    eeg.check_positive(ap, args, (*BATCH_FLAGS.values(), "threads", "repeats"))
    return args


def resolve_defaults(args: argparse.Namespace, device: torch.device) -> None:
    """Per-device batches, precision, AdamW kind and MFU peak (as ``eeg_pretrain_throughput.resolve_defaults``)."""
    kind = device.type
    for case, flag in BATCH_FLAGS.items():
        if getattr(args, flag) is None:
            setattr(args, flag, DEFAULT_BATCH[kind][case])
    args.precision = args.precision or ("bf16" if kind == "cuda" else "fp32")
    args.fused = (kind == "cuda") if args.fused is None else args.fused
    if args.peak_tflops is None and kind == "cuda":
        args.peak_tflops = eeg.H100_SXM_BF16_DENSE_TFLOPS


# ---------------------------------------------------------------------------------------------------- FLOP counting
def info_nce_flops(batch: int, dim: int, key_grad: bool) -> int:
    """Matmul FLOPs of one InfoNCE forward + backward: the ``B x B`` logits ``q @ k.T`` over ``dim`` features (2 B^2
    dim forward), the query gradient (2 B^2 dim) and, when the keys need one, the key gradient (2 B^2 dim)."""
    return 2 * batch * batch * dim * (3 if key_grad else 2)


def double_contrast_flops(cfg: FMRIMAEConfig, batch: int, mask_ratio: float = MASK_RATIO) -> int:
    """Analytic FLOPs of one double-contrast step (see the module docstring): two MAE passes + the two InfoNCE."""
    mae = 2 * eeg.pretrain_flops(cfg, batch, mask_ratio)
    return mae + info_nce_flops(batch, cfg.n_times, key_grad=False) + info_nce_flops(batch, cfg.n_times, True)


# ---------------------------------------------------------------------------------------------------- cases
def build_case(name: str, batch: int, device: torch.device, precision: str, fused: bool, clip: bool,
               seed: int) -> eeg.Case:
    """An ``FMRIPretraining.losses`` step with its MAE optimiser (the case ``name`` of ``CASES``)."""
    torch.manual_seed(seed)
    preset, n_voxels = CASES[name]
    cfg = fmri_mae_config(n_voxels, preset, mask_ratio=MASK_RATIO)
    module = FMRIPretraining(brain_shape=(n_voxels,), encoder={"preset": preset}, mask_ratio=MASK_RATIO,
                             temperature=TEMPERATURE, gather=False, lr=LR, **LOSS_WEIGHTS)
    if module.config != cfg:
        raise RuntimeError(f"FMRIPretraining built {module.config}, expected fmri_mae_config: {cfg}")
    module = module.to(device).train()
    params = [p for p in module.mae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(decay_groups(module.mae.named_parameters(), 0.05), lr=LR, betas=(0.9, 0.95),
                            fused=fused)
    x = torch.randn(batch, n_voxels, device=device)

    def forward_backward() -> torch.Tensor:
        with eeg._autocast(device, precision):
            loss = module.losses(x)["loss"]
        loss.backward()
        return loss

    step, count_step = eeg._training_steps(forward_backward, params, opt, eeg.PRETRAIN_CLIP if clip else None)
    n_enc = 1 + int(cfg.n_tokens * (1 - MASK_RATIO))
    return eeg.Case(name, preset, batch, step, count_step, double_contrast_flops(cfg, batch),
                    sum(p.numel() for p in params),
                    f"{n_voxels}->{cfg.n_times} vox, enc {n_enc}, dec {cfg.n_tokens + 1}")


# ---------------------------------------------------------------------------------------------------- report
def report(results: list[eeg.Result], precision: str, peak_tflops: float | None) -> None:
    """Print the Markdown table and the FLOP cross-check."""
    print()
    harness.print_table_header([("case", "<10"), ("batch", ">5"), ("precision", "<9"),
                                ("step ms median [min, max]", ">30"), ("samples/s", ">9"),
                                ("analytic GFLOP/step", ">19"), ("counted GFLOP/step", ">18"), ("TFLOP/s", ">7"),
                                ("MFU", ">6"), ("peak GiB", ">8")])
    for r in results:
        tflops = r.flops / r.median_s / 1e12
        mfu = f"{tflops / peak_tflops:6.1%}" if peak_tflops else f"{'n/a':>6}"
        counted = "skipped" if r.counted is None else f"{r.counted / 1e9:.4g}"
        mem = "n/a" if r.peak_mem_gib is None else f"{r.peak_mem_gib:.2f}"
        step = f"{r.median_s * 1e3:.1f} [{min(r.per_step) * 1e3:.1f}, {max(r.per_step) * 1e3:.1f}]"
        harness.print_table_row([f"{r.name:<10}", f"{r.batch:>5}", f"{precision:<9}", f"{step:>30}",
                                 f"{r.samples_per_s:9.2f}", f"{r.flops / 1e9:19.4g}", f"{counted:>18}",
                                 f"{tflops:7.3g}", mfu, f"{mem:>8}"])

    print("\nFLOPs per step, analytic vs torch.utils.flop_counter.FlopCounterMode (one forward + backward):")
    for r in results:
        ratio = "" if r.counted is None else f", analytic / counted = {r.flops / r.counted:.4f}"
        print(f"  {r.name} ({r.params / 1e6:.1f}M params; {r.tokens}): {r.steps_per_repeat} step(s) per repeat, "
              f"last loss {r.loss:.4f}{ratio}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = harness.parse_device(args.device)
    harness.check_device(device)  # first: the per-device defaults know only cpu and cuda
    resolve_defaults(args, device)
    eeg.check_bf16(device, args.precision)
    torch.set_num_threads(args.threads)
    device = harness.use_device(device)

    harness.print_header(device, argv)
    print(f"settings: precision={args.precision} fused_adamw={args.fused} grad_clip={not args.no_clip} "
          f"mask_ratio={MASK_RATIO} tau={TEMPERATURE} weights={LOSS_WEIGHTS} {harness.timing_settings(args)}; "
          f"peak={f'{args.peak_tflops:g} TFLOP/s' if args.peak_tflops else 'n/a (no MFU)'}")

    results = []
    for name in args.cases:
        batch = getattr(args, BATCH_FLAGS[name])
        case = build_case(name, batch, device, args.precision, args.fused, not args.no_clip, args.seed)
        harness.reset_peak_memory(device)
        per_step, k, loss = harness.time_steps(case.step, device, warmup=args.warmup, warmup_s=args.warmup_s,
                                               repeats=args.repeats, min_repeat_s=args.min_repeat_s)
        counted = None if args.no_flop_counter else eeg.counted_flops(case, device)
        mem = harness.peak_memory_gib(device)
        results.append(eeg.Result(case.name, case.batch, case.params, case.tokens, case.flops, per_step, k, counted,
                                  loss, mem))
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report(results, args.precision, args.peak_tflops)
    harness.print_load_average("end")


if __name__ == "__main__":
    main()
