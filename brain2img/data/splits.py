"""Seeded train/val/test splits by stimulus, the split manifest, config hashes and file checksums."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.json"


def split_stimuli(labels: np.ndarray, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """Split stimuli (not trials) into train/val/test, stratified by label.

    Within each label the stimuli are shuffled and given evenly spaced positions in ``[0, 1)`` (plus a random
    offset); sorting all stimuli by position and cutting at the split sizes gives every label close to its share of
    each split, with exact split sizes. With all labels equal (e.g. ``-1``, unknown) it is a plain random split.

    Args:
        labels: one label per stimulus ``(N,)``.
        val_fraction: fraction of stimuli in val, ``>= 0``.
        test_fraction: fraction of stimuli in test, ``>= 0``; ``val_fraction + test_fraction < 1``.
        seed: random seed.

    Returns:
        Sorted stimulus positions (int64) for ``"train"``, ``"val"`` and ``"test"``; disjoint, covering all.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"need val_fraction >= 0, test_fraction >= 0 and val_fraction + test_fraction < 1, got "
                         f"val_fraction={val_fraction}, test_fraction={test_fraction}")
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"{n} stimuli are too few for val_fraction={val_fraction} and test_fraction={test_fraction}: "
                         f"{n_test} test + {n_val} val leave no training stimulus")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    position = np.empty(n)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = rng.permutation(len(members))
        position[members[order]] = (np.arange(len(members)) + rng.uniform()) / len(members)
    ranked = np.lexsort((rng.uniform(size=n), position))
    return {
        "test": np.sort(ranked[:n_test]).astype(np.int64),
        "val": np.sort(ranked[n_test : n_test + n_val]).astype(np.int64),
        "train": np.sort(ranked[n_test + n_val :]).astype(np.int64),
    }


def config_hash(config: dict[str, Any]) -> str:
    """Short (16 hex) sha256 of a JSON-serialisable config, independent of key order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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


def split_trials(trial_stimulus: np.ndarray, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Trial indices of each split (trials whose stimulus is in the split), in trial order."""
    return {name: np.flatnonzero(np.isin(trial_stimulus, stim)).astype(np.int64) for name, stim in splits.items()}


def build_manifest(config: dict[str, Any], seed: int, stimulus_ids: np.ndarray, splits: dict[str, np.ndarray],
                   trial_stimulus: np.ndarray, checksums: dict[str, str]) -> dict[str, Any]:
    """The manifest of a prepared dataset.

    Args:
        config: the generating / loading config (JSON-serialisable).
        seed: split seed.
        stimulus_ids: id of each stimulus position ``(N,)``.
        splits: stimulus positions per split (from :func:`split_stimuli`).
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


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest, with a clear error if it is missing or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split manifest not found: '{path}'")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"split manifest '{path}' is not valid JSON: {err}") from err
    missing = [k for k in ("config", "config_hash", "seed", "splits", "checksums") if k not in data]
    if missing:
        raise ValueError(f"split manifest '{path}' lacks the keys {missing}")
    return data


def publish_folder(tmp: Path, folder: Path) -> None:
    """Move a fully written temporary cache folder into place; if another process published a complete one
    (with its manifest) meanwhile, keep that one and drop ``tmp``."""
    try:
        os.replace(tmp, folder)
    except OSError:
        if not (folder / MANIFEST_NAME).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def open_prepared(folder: Path, manifest_path: Path, expected_hash: str, names: tuple[str, ...],
                  mmap: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Open a prepared dataset folder: check that its manifest was written for this config, verify its checksums and
    load ``<name>.npy`` for each of ``names`` (memory-mapped for those in ``mmap``).

    Returns:
        The manifest and the arrays by name.

    Raises:
        ValueError: a manifest of another config or a checksum mismatch (the message names the folder to delete).
    """
    manifest = read_manifest(manifest_path)
    if manifest["config_hash"] != expected_hash:
        raise ValueError(f"manifest '{manifest_path}' was written for another config ({manifest.get('config')}); "
                         f"delete the folder '{folder}' to prepare it again")
    verify_checksums(folder, manifest["checksums"])
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
