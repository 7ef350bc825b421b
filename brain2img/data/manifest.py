"""The manifest of a prepared dataset folder: its config, split (stimulus ids, trial ids, repeats) and checksums.

Every prepared folder (see :class:`brain2img.data.prepared.PreparedDataModule`) holds ``manifest.json`` beside its
``.npy`` arrays. It records the config the folder was prepared for (and its hash, which names the folder), the
seed, each split's stimulus ids, trial ids and repeat counts, and the sha256 of every array, so a reused folder is
checked before it is trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from brain2img.data.splits import SPLITS, split_trials
from brain2img.io import config_hash, read_json, sha256_file

MANIFEST_NAME = "manifest.json"
REQUIRED_KEYS = ("config", "config_hash", "seed", "splits", "checksums")


def array_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every ``.npy`` file directly in ``folder``, by file name (sorted)."""
    return {path.name: sha256_file(path) for path in sorted(Path(folder).glob("*.npy"))}


def build_manifest(config: dict[str, Any], seed: int, stimulus_ids: np.ndarray, splits: dict[str, np.ndarray],
                   trial_stimulus: np.ndarray, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest of a prepared dataset.

    Args:
        config: the generating / loading config (JSON-serialisable).
        seed: split seed.
        stimulus_ids: id of each stimulus position ``(N,)``.
        splits: stimulus positions per split (e.g. from :func:`~brain2img.data.splits.split_stimuli`).
        trial_stimulus: stimulus position of each trial ``(n_trials,)``.
        checksums: file name -> sha256 of every array file of the dataset.
    """
    trials = split_trials(trial_stimulus, splits)
    counts = np.bincount(trial_stimulus, minlength=len(stimulus_ids))
    out: dict[str, Any] = {"config": config, "config_hash": config_hash(config), "seed": seed, "splits": {}}
    for name in SPLITS:
        stim = splits[name]
        out["splits"][name] = {
            "stimulus_ids": stimulus_ids[stim].tolist(),
            "trial_ids": trials[name].tolist(),
            "repeats": counts[stim].tolist(),
        }
    out["repeats"] = {"min": int(counts.min()), "max": int(counts.max()), "n_trials": int(len(trial_stimulus))}
    out["checksums"] = dict(checksums)
    return out


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest, with a clear error if it is missing, not JSON, or incomplete."""
    path = Path(path)
    data = read_json(path, "split manifest")  # a missing file: FileNotFoundError naming it
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"split manifest '{path}' lacks the keys {missing}; delete its folder '{path.parent}' to "
                         "prepare it again")
    return data


def verify_checksums(folder: str | Path, checksums: dict[str, str]) -> None:
    """Raise a clear error if a file listed in ``checksums`` is missing or its sha256 differs."""
    folder = Path(folder)
    for name, expected in checksums.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"cached file missing: '{path}' (listed in {folder / MANIFEST_NAME}); delete the "
                                    f"folder '{folder}' to regenerate it")
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"checksum mismatch for cached file '{path}': sha256 {actual[:16]}..., manifest says "
                             f"{expected[:16]}...; the file is corrupted or was modified: delete the folder "
                             f"'{folder}' to regenerate it")


def open_prepared(folder: Path, expected_hash: str, names: tuple[str, ...], mmap: tuple[str, ...] = ()
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Open a prepared folder: check that its manifest was written for this config, verify its checksums and load
    ``<name>.npy`` for each of ``names`` (memory-mapped for those in ``mmap``).

    Returns:
        The manifest and the arrays by name.

    Raises:
        ValueError: a manifest of another config or a checksum mismatch (the message names the folder to delete).
    """
    manifest_path = folder / MANIFEST_NAME
    manifest = read_manifest(manifest_path)
    if manifest["config_hash"] != expected_hash:
        raise ValueError(f"manifest '{manifest_path}' was written for another config ({manifest.get('config')}); "
                         f"delete the folder '{folder}' to prepare it again")
    verify_checksums(folder, manifest["checksums"])
    absent = [n for n in names if f"{n}.npy" not in manifest["checksums"]]
    if absent:
        raise ValueError(f"prepared folder '{folder}' lacks the arrays {absent} (an older cache layout?); delete the "
                         "folder to prepare it again")
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r" if name in mmap else None, allow_pickle=False)
              for name in names}
    return manifest, arrays


def manifest_split_positions(manifest: dict[str, Any], stimulus_ids: np.ndarray, manifest_path: Path
                             ) -> dict[str, np.ndarray]:
    """Positions in ``stimulus_ids`` (sorted) of each split's stimulus ids listed in the manifest."""
    splits = {}
    for name in SPLITS:
        ids = np.asarray(manifest["splits"][name]["stimulus_ids"], dtype=np.int64)
        pos = np.searchsorted(stimulus_ids, ids)
        if not np.array_equal(stimulus_ids[np.minimum(pos, len(stimulus_ids) - 1)], ids):
            raise ValueError(f"manifest '{manifest_path}': split '{name}' lists stimulus ids that are not in "
                             f"stimulus_ids.npy; delete its folder '{manifest_path.parent}' to prepare it again")
        splits[name] = np.sort(pos).astype(np.int64)
    return splits
