"""Every fMRI method's config for GOD, BOLD5000 and NSD runs (``fast_dev_run``) on small files in the published
formats: the shipped YAML with only the data paths, the heavy pretrained parts (SD, CLIP, ViT-MAE, the paper-size
encoder) and the sizes swapped for tiny offline ones, so the data wiring (datamodule arguments, ROI names linked into
the model, brain shapes) is exactly the config's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from brain2img.cli import main
from tests.builders import bold5000 as bold5000_files
from tests.builders import god as god_files
from tests.builders import nsd as nsd_files
from tests.builders.small import SMALL

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"n_way": 2, "num_trials": 2, "n_boot": 10, "resize": 32}
TINY_BACKBONE = {"preset": "tiny", **SMALL}


def _god(tmp: Path) -> dict[str, Any]:
    god_files.build_npz(tmp / "god", side=16, repeats=3)
    return {"root": str(tmp / "god"), "image_size": 16, "test_repeats": 3, "val_fraction": 0.2}


def _bold5000(tmp: Path) -> dict[str, Any]:
    bold5000_files.build(tmp / "bold5000")
    return {"root": str(tmp / "bold5000"), "image_size": 16, "val_fraction": 0.2}


def _nsd(tmp: Path) -> dict[str, Any]:
    nsd_files.build(tmp / "nsd", nsd_files.write_stimuli(tmp))
    return {"root": str(tmp / "nsd"), "sessions": 2, "trials_per_session": nsd_files.TPS, "image_size": 16,
            "val_fraction": 0.2}


DATA = {"god": _god, "bold5000": _bold5000, "nsd": _nsd}


def _tiny_model(model: dict[str, Any]) -> dict[str, Any]:
    """The config's model with offline tiny parts in place of pretrained weights; every other setting is kept."""
    args = dict(model["init_args"])
    method = model["class_path"].rsplit(".", 1)[-1]
    if "encoder" in args:
        args["encoder"] = {"preset": "tiny"}
        args["encoder_checkpoint"] = None
    if "image_mae" in args:
        args["image_mae"] = {"kind": "tiny"}
        args["cross_heads"] = 4
    if "backbone" in args:
        args["backbone"] = {**TINY_BACKBONE, "condition_dim": 1280} if method in ("OsakaMethod", "MindEye") \
            else TINY_BACKBONE
        args["num_inference_steps"] = 2
    if "image_encoder" in args:
        args["image_encoder"] = {"kind": "efficientnet_lite0"} if method == "OsakaMethod" else \
            {"kind": "efficientnet_lite0", **({"grid": 1} if method == "MindEye" else {})}
    if method == "MindEye":
        args.update(network={"preset": "tiny"}, low_level={"preset": "tiny"},
                    prior={"preset": "tiny", "depth": 1, "heads": 10, "dim_head": 128})
    if method == "OsakaMethod":
        args.update(alphas=[0.1, 10.0], n_folds=2)
        args.pop("captions", None)  # captions need SD's text encoder: c is then the image embedding
    if method == "DCMAE":
        args.update(scheduler="ddim", num_samples=2, linear_probe=False)
    if "metrics" in args:
        args["metrics"] = METRICS
    return {**model, "init_args": args}


CONFIGS = sorted(p.relative_to(ROOT).as_posix() for ds in DATA for p in (ROOT / "conf").glob(f"*/*{ds}.yaml"))


def test_every_fmri_method_has_a_config_for_every_fmri_benchmark() -> None:
    expected = {f"conf/{m}/{name}.yaml" for m in ("mindeye", "osaka") for name in ("god", "bold5000", "nsd")}
    expected |= {f"conf/dcmae/{stage}_{ds}.yaml" for stage in ("cross_modal", "finetune") for ds in DATA}
    assert expected <= set(CONFIGS), sorted(expected - set(CONFIGS))


@pytest.mark.parametrize("config", CONFIGS)
def test_config_runs_on_small_files_in_the_published_format(config: str, tmp_path: Path) -> None:
    cfg = yaml.safe_load((ROOT / config).read_text())
    dataset = next(ds for ds in DATA if config.endswith(f"{ds}.yaml"))
    data_args = {**cfg["data"]["init_args"], **DATA[dataset](tmp_path), "batch_size": 8, "num_workers": 0,
                 "cache_dir": str(tmp_path / "cache")}
    if dataset == "nsd":
        data_args.pop("betas_format", None)
    run = {"seed_everything": 0, "test_after_fit": False,
           "trainer": {"accelerator": "cpu", "devices": 1, "fast_dev_run": True, "logger": False,
                       "enable_progress_bar": False, "enable_model_summary": False,
                       "default_root_dir": str(tmp_path / "run")},
           "model": _tiny_model(cfg["model"]), "data": {**cfg["data"], "init_args": data_args}}
    if dataset == "god" and run["model"]["init_args"].get("z_roi"):
        # the config's ROIs are GOD's LVC / HVC (~2,000 voxels each in the real counts the files carry): check that
        # the names resolve, then fit the ridges on the smallest ROIs to keep the run short
        from brain2img.data.god import GODDataModule

        rois = GODDataModule(**data_args).roi_columns
        assert {run["model"]["init_args"]["z_roi"], run["model"]["init_args"]["c_roi"]} <= set(rois)
        run["model"]["init_args"].update(z_roi="V1", c_roi="V3")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(run))
    main(["fit", "--config", str(path)])
