"""Every registered method and datamodule runs ``brain2img fit --trainer.fast_dev_run true`` on small data.

The completeness test makes this a gate: a method or datamodule added to :mod:`brain2img.registry` without a case
here fails it, naming the entry (see docs/contributing.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from brain2img import registry
from brain2img.cli import main
from tests.builders import bold5000 as bold5000_files
from tests.builders import eeg_imagenet as eeg_imagenet_files
from tests.builders import fmri_corpus as fmri_corpus_files
from tests.builders import god as god_files
from tests.builders import nsd as nsd_files
from tests.builders.raw_eeg import noise, write_fif
from tests.builders.small import SMALL

TINY = {"preset": "tiny", **SMALL}
TINY_1280 = {**TINY, "condition_dim": 1280}  # conditioned on the EfficientNet-Lite0 feature
METRICS = {"n_way": 2, "num_trials": 2, "n_boot": 10, "resize": 32}
PATH = {e.name: e.path for e in registry.ENTRIES}


@dataclass(frozen=True)
class Case:
    """One fast_dev_run: a method on a datamodule; ``data`` builds the data's files and returns its init_args."""

    method: str
    datamodule: str
    model: dict[str, Any]
    data: Callable[[Path], dict[str, Any]]


def _simulated(modality: str) -> Callable[[Path], dict[str, Any]]:
    def build(tmp: Path) -> dict[str, Any]:
        return {"modality": modality, "n_stimuli": 22, "image_size": 16, "n_voxels": [40, 30], "n_channels": 8,
                "duration": 0.5, "batch_size": 16, "cache_dir": str(tmp / "cache")}
    return build


def _corpus(tmp: Path) -> dict[str, Any]:
    return {"subjects": [0, 1], "n_stimuli": 22, "image_size": 16, "n_channels": 8, "batch_size": 16,
            "cache_dir": str(tmp / "cache")}


def _fmri_sim_corpus(tmp: Path) -> dict[str, Any]:
    return {"n_subjects": 4, "windows_per_subject": 8, "voxel_range": [40, 60], "n_sources": 4, "val_fraction": 0.25,
            "batch_size": 16}


def _fmri_corpus(tmp: Path) -> dict[str, Any]:
    return fmri_corpus_files.fast_dev_run_args(tmp)


def _arrays(tmp: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(20), 2)
    np.save(tmp / "brain.npy", rng.standard_normal((len(ids), 30)).astype(np.float32))
    np.save(tmp / "images.npy", rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)[ids])
    np.save(tmp / "ids.npy", ids)
    return {"brain_path": str(tmp / "brain.npy"), "images_path": str(tmp / "images.npy"),
            "stimulus_ids_path": str(tmp / "ids.npy"), "batch_size": 16, "cache_dir": str(tmp / "cache")}


def _nsd(tmp: Path) -> dict[str, Any]:
    nsd_files.build(tmp / "nsd", nsd_files.write_stimuli(tmp))
    return {"root": str(tmp / "nsd"), "sessions": 2, "trials_per_session": nsd_files.TPS, "image_size": 16,
            "val_fraction": 0.2, "batch_size": 16, "cache_dir": str(tmp / "cache")}


def _bold5000(tmp: Path) -> dict[str, Any]:
    bold5000_files.build(tmp / "bold5000")
    return {"root": str(tmp / "bold5000"), "image_size": 16, "val_fraction": 0.2, "batch_size": 16,
            "cache_dir": str(tmp / "cache")}


def _god(tmp: Path) -> dict[str, Any]:
    god_files.build_npz(tmp / "god", side=16, repeats=3)
    return {"root": str(tmp / "god"), "subject": 3, "roi": "LVC", "image_size": 16, "test_repeats": 3,
            "val_fraction": 0.2, "batch_size": 16, "cache_dir": str(tmp / "cache")}


def _eeg_imagenet(tmp: Path) -> dict[str, Any]:
    files = eeg_imagenet_files.build(tmp)
    return {"eeg_path": files["eeg"], "splits_path": None, "image_root": files["root"], "split": "stimulus",
            "subject": None, "n_channels": 4, "image_size": 16, "batch_size": 16, "cache_dir": str(tmp / "cache")}


def _raw_eeg(tmp: Path) -> dict[str, Any]:
    files = [str(write_fif(tmp / f"sub{k}_raw.fif", noise(16, 8.0, 100.0, seed=k), 100.0)) for k in range(3)]
    return {"files": files, "n_channels": 16, "n_times": 128, "sfreq": 100.0, "l_freq": 1.0, "h_freq": 40.0,
            "batch_size": 16, "progress": False, "cache_dir": str(tmp / "cache")}


MINDEYE = {"backbone": TINY_1280, "network": {"preset": "tiny"}, "low_level": {"preset": "tiny"},
           "prior": {"preset": "tiny", "depth": 1, "heads": 10, "dim_head": 128},  # 10 x 128 = the 1280-d tokens
           "image_encoder": {"kind": "efficientnet_lite0", "grid": 1}, "num_inference_steps": 2, "metrics": METRICS}
DREAM = {"backbone": TINY, "encoder": {"preset": "tiny"}, "num_inference_steps": 2, "scheduler": "ddim",
         "linear_probe": False, "metrics": METRICS}
DCMAE = {**DREAM, "num_samples": 2}
OSAKA = {"backbone": TINY_1280, "alphas": [0.1, 10.0], "n_folds": 2, "num_inference_steps": 2, "metrics": METRICS}
CASES = (
    Case("osaka", "simulated", OSAKA, _simulated("fmri")),
    Case("osaka", "arrays", OSAKA, _arrays),
    Case("osaka", "god", {**OSAKA, "z_roi": "V1", "c_roi": "V3"}, _god),  # roi_columns linked
    Case("mindeye", "nsd", MINDEYE, _nsd),
    Case("mindeye", "bold5000", MINDEYE, _bold5000),
    Case("dreamdiffusion", "eeg_imagenet", DREAM, _eeg_imagenet),
    Case("dreamdiffusion", "simulated", DREAM, _simulated("eeg")),
    Case("eeg_pretrain", "raw_eeg", {"encoder": {"preset": "tiny"}}, _raw_eeg),
    Case("eeg_pretrain", "simulated_corpus", {"encoder": {"preset": "tiny"}}, _corpus),
    Case("fmri_pretrain", "simulated_fmri_corpus", {"encoder": {"preset": "tiny"}}, _fmri_sim_corpus),
    Case("dcmae_cross", "simulated", {"encoder": {"preset": "tiny"}}, _simulated("fmri")),
    Case("dcmae", "simulated", DCMAE, _simulated("fmri")),
    Case("fmri_pretrain", "fmri_corpus", {"encoder": {"preset": "tiny"}}, _fmri_corpus),
)


def test_every_registered_entry_has_a_fast_dev_run_case():
    covered = {c.method for c in CASES} | {c.datamodule for c in CASES}
    missing = sorted(e.name for e in registry.ENTRIES if e.name not in covered)
    assert not missing, f"registered without a fast_dev_run case in {Path(__file__).name}: {missing}"
    assert covered <= set(PATH), f"cases of unregistered names: {sorted(covered - set(PATH))}"


@pytest.mark.parametrize("case", CASES, ids=[f"{c.method}-{c.datamodule}" for c in CASES])
def test_fast_dev_run(case: Case, tmp_path):
    config = {"seed_everything": 0, "test_after_fit": False,
              "trainer": {"accelerator": "cpu", "devices": 1, "fast_dev_run": True, "logger": False,
                          "enable_progress_bar": False, "enable_model_summary": False,
                          "default_root_dir": str(tmp_path / "run")},
              "model": {"class_path": PATH[case.method], "init_args": case.model},
              "data": {"class_path": PATH[case.datamodule], "init_args": case.data(tmp_path)}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
