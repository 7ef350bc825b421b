"""Does pre-training on an unlabelled corpus help when labelled pairs are few? Pre-trained vs scratch, same seeds.

For each seed, the method's stages run through the CLI (``Brain2ImgCLI``) with ``--seed_everything <seed>``:

- ``dreamdiffusion``: stage A (masked EEG modelling on the simulated EEG corpus) -> stage B from it ("pretrained"),
  and stage B from a random encoder ("scratch").
- ``dcmae``: stage 1 (double-contrast fMRI MAE on the simulated fMRI corpus) -> stage 3 from it ("pretrained");
  stage 1 -> stage 2 (cross-modal guidance) -> stage 3 ("full", with ``--full``); stage 3 from scratch ("scratch").

Every fine-tuning run keeps the checkpoint chosen on validation and scores the test split once (the configs'
``test_after_fit``). Besides the test metrics, each run records per-test-stimulus retrieval hits (brain -> image
top-1 among the test stimuli, from the method's ``embed``), so that arms can be compared on the *same* stimuli: the
difference of two arms is a paired bootstrap over test stimuli (hits averaged over seeds first).

    .venv/bin/python bench/pretraining_premise.py --method dreamdiffusion --seeds 0 1 2
    .venv/bin/python bench/pretraining_premise.py --method dcmae --seeds 0 1 2 --full

Results: ``<out>/<method>/results.json`` (per run: metrics and hits) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from brain2img.cli import Brain2ImgCLI
from brain2img.cli import main as cli_main
from brain2img.data import schema
from brain2img.metrics.bootstrap import paired_bootstrap_ci

CONFIGS = {
    "dreamdiffusion": {"pretrain": "conf/dreamdiffusion/pretrain_simulated.yaml",
                       "finetune": "conf/dreamdiffusion/finetune_simulated.yaml"},
    "dcmae": {"pretrain": "conf/dcmae/pretrain_simulated.yaml", "cross": "conf/dcmae/cross_modal_simulated.yaml",
              "finetune": "conf/dcmae/finetune_simulated.yaml"},
}
KEYS = ("test/nway_top1", "test/retrieval_brain_to_image", "test/retrieval_image_to_brain", "test/two_way",
        "test/pixcorr", "test/ssim")


class NWayCapture(L.Callback):
    """Keeps the per-stimulus n-way top-1 scores of a test run (before the method drops its metrics)."""

    scores: dict[int, float] = {}

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nway = pl_module.test_metrics.nway
        ids = nway._synced(lambda: nway._rows()[0])
        NWayCapture.scores = dict(zip(ids.tolist(), nway.per_sample().tolist(), strict=True))


def nway_per_stimulus(checkpoint: str) -> dict[str, list]:
    """Test ``checkpoint`` again (model and data from the config inside it) and return its per-stimulus n-way top-1."""
    cli_main(["test", "--ckpt_path", checkpoint, "--trainer.logger", "false", "--trainer.enable_progress_bar",
                  "false", "--trainer.callbacks+=pretraining_premise.NWayCapture"])
    import pretraining_premise  # the module the CLI instantiated the callback from (this file may run as __main__)

    scores = pretraining_premise.NWayCapture.scores
    if not scores:
        raise RuntimeError(f"no per-stimulus n-way scores were captured when testing {checkpoint}")
    ids = sorted(scores)
    return {"nway_stimulus_id": ids, "nway": [scores[i] for i in ids]}


def run(config: str, name: str, seed: int, out: Path, extra: list[str]) -> Brain2ImgCLI:
    """Fit one stage through the CLI; returns the CLI (model = the checkpoint chosen on validation, when tested)."""
    args = ["fit", "--config", config, "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(out), "--trainer.logger.init_args.name", name, *extra]
    start = time.perf_counter()
    cli = Brain2ImgCLI(args)
    print(f"[premise] {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return cli


def best_checkpoint(cli: Brain2ImgCLI) -> str:
    """The checkpoint chosen on validation (or the last one when nothing is monitored)."""
    ckpt = cli.trainer.checkpoint_callback
    return ckpt.best_model_path or ckpt.last_model_path


@torch.no_grad()
def retrieval_hits(cli: Brain2ImgCLI) -> dict[str, list]:
    """Per test stimulus: is its own image the top-1 of its brain embedding among the test images, and vice versa."""
    model, dm = cli.model.eval(), cli.datamodule
    brain, image, ids = [], [], []
    for batch in torch.utils.data.DataLoader(dm.dataset("test", "average"), batch_size=64):
        batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        b, i = model.embed(batch)
        brain.append(torch.nn.functional.normalize(b.flatten(1).float(), dim=1).cpu())
        image.append(torch.nn.functional.normalize(i.flatten(1).float(), dim=1).cpu())
        ids.append(batch[schema.STIMULUS_ID].cpu())
    sim = torch.cat(brain) @ torch.cat(image).T
    own = torch.arange(len(sim))
    return {"stimulus_id": torch.cat(ids).tolist(), "b2i": (sim.argmax(1) == own).float().tolist(),
            "i2b": (sim.argmax(0) == own).float().tolist()}


def finetune(method: str, arm: str, seed: int, out: Path, checkpoint: str | None, extra: list[str]) -> dict:
    cli = run(CONFIGS[method]["finetune"], f"{arm}_s{seed}", seed, out,
              ["--model.init_args.encoder_checkpoint", checkpoint or "null", *extra])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
    hits = retrieval_hits(cli)
    return {"arm": arm, "seed": seed, "checkpoint": best_checkpoint(cli), "metrics": metrics, **hits,
            **nway_per_stimulus(best_checkpoint(cli))}


def table(results: list[dict], arms: list[str]) -> str:
    """Per-run metrics, then each arm's difference from scratch on the same test stimuli."""
    lines = ["| arm | seed | 50-way top-1 [95% CI] | retrieval b->i [95% CI] | retrieval i->b | 2-way | PixCorr "
             "| SSIM |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]

        def ci(key: str, m: dict = m) -> str:
            low, high = m.get(key + "_ci_low", float("nan")), m.get(key + "_ci_high", float("nan"))
            return f"{m[key]:.3f} [{low:.3f}, {high:.3f}]"
        lines.append(f"| {r['arm']} | {r['seed']} | {ci('test/nway_top1')} | {ci('test/retrieval_brain_to_image')} | "
                     f"{m['test/retrieval_image_to_brain']:.3f} | {m['test/two_way']:.3f} | {m['test/pixcorr']:.3f} | "
                     f"{m['test/ssim']:.3f} |")
    lines += ["", "| comparison (paired over test stimuli, hits averaged over seeds) | b->i difference [95% CI] | "
              "i->b difference [95% CI] | 50-way difference [95% CI] | seeds' 50-way differences |",
              "|---|---|---|---|---|"]

    def mean_hits(arm: str, key: str, seeds: set[int]) -> np.ndarray:
        runs = [r for r in results if r["arm"] == arm and r["seed"] in seeds]
        id_key = "nway_stimulus_id" if key == "nway" else "stimulus_id"
        order = np.argsort(runs[0][id_key])
        assert all(r[id_key] == runs[0][id_key] for r in runs), "arms scored different test stimuli"
        return np.mean([np.asarray(r[key])[order] for r in runs], axis=0)

    for arm in arms:
        if arm == "scratch":
            continue
        cells = []
        seeds = {r["seed"] for r in results if r["arm"] == arm} & {r["seed"] for r in results if r["arm"] == "scratch"}
        for key in ("b2i", "i2b"):
            d, lo, hi = paired_bootstrap_ci(mean_hits(arm, key, seeds), mean_hits("scratch", key, seeds), n_boot=10000)
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        if all("nway" in r for r in results if r["seed"] in seeds and r["arm"] in (arm, "scratch")):
            d, lo, hi = paired_bootstrap_ci(mean_hits(arm, "nway", seeds), mean_hits("scratch", "nway", seeds),
                                            n_boot=10000)
            cells.append(f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]")
        else:
            cells.append("n/a")
        nway = [r["metrics"]["test/nway_top1"] for r in sorted(results, key=lambda r: r["seed"])
                if r["arm"] == arm and r["seed"] in seeds]
        base = [r["metrics"]["test/nway_top1"] for r in sorted(results, key=lambda r: r["seed"])
                if r["arm"] == "scratch" and r["seed"] in seeds]
        diffs = np.asarray(nway) - np.asarray(base)
        cells.append(", ".join(f"{d:+.4f}" for d in diffs))
        lines.append(f"| {arm} - scratch (seeds {sorted(seeds)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--full", action="store_true", help="dcmae: also the stage 1 -> 2 -> 3 arm")
    parser.add_argument("--out", default="runs/premise")
    parser.add_argument("--rescore", action="store_true",
                        help="add per-stimulus 50-way scores to recorded runs that lack them (tests their checkpoints)")
    parser.add_argument("--arms", nargs="+", default=None, choices=["scratch", "pretrained", "full"],
                        help="run only these arms (e.g. a pre-training variant against a scratch arm on record)")
    parser.add_argument("--pretrained", default=None,
                        help="reuse this stage-1 / stage-A checkpoint for every seed instead of pre-training per seed "
                             "(the pre-trained encoder as a fixed artifact; the seeds then vary fine-tuning only)")
    parser.add_argument("--pretrain_args", default="", help="extra CLI overrides of the pre-training runs, one "
                        "quoted string: --pretrain_args='--model.init_args.mask_loss_weight 1'")
    parser.add_argument("--finetune_args", default="", help="extra CLI overrides of the fine-tuning runs (as above)")
    args = parser.parse_args()
    args.pretrain_args, args.finetune_args = shlex.split(args.pretrain_args), shlex.split(args.finetune_args)
    out = Path(args.out) / args.method
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["arm"], r["seed"]) for r in results}
    arms = ["scratch", "pretrained"] + (["full"] if args.full and args.method == "dcmae" else [])
    arms = [a for a in arms if args.arms is None or a in args.arms]
    for seed in args.seeds:
        if all((arm, seed) in done for arm in arms):
            continue
        pre = args.pretrained or best_checkpoint(run(CONFIGS[args.method]["pretrain"], f"pretrain_s{seed}", seed,
                                                     out, args.pretrain_args))
        todo = {"scratch": None, "pretrained": pre}
        if "full" in arms:
            cross = run(CONFIGS["dcmae"]["cross"], f"cross_s{seed}", seed, out,
                        ["--model.init_args.encoder_checkpoint", pre])
            todo["full"] = best_checkpoint(cross)
        for arm in arms:
            if (arm, seed) not in done:
                results.append(finetune(args.method, arm, seed, out, todo[arm], args.finetune_args))
                results_path.write_text(json.dumps(results, indent=1) + "\n")  # resumable: finished runs are kept
    if args.rescore:
        for r in results:
            if "nway" not in r:
                r.update(nway_per_stimulus(r["checkpoint"]))
                results_path.write_text(json.dumps(results, indent=1) + "\n")
    shown = [a for a in ("scratch", "pretrained", "full") if any(r["arm"] == a for r in results)]
    print(table(sorted(results, key=lambda r: (shown.index(r["arm"]), r["seed"])), shown))


if __name__ == "__main__":
    main()
