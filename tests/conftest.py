"""Shared test setup: offline everything, few threads, a session-wide cache for simulated data."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One cache folder per test session, shared by tests that build the same simulated data."""
    return str(tmp_path_factory.mktemp("brain2img-cache"))


@pytest.fixture(scope="module")
def nsd_stimuli(tmp_path_factory):
    """One real-size NSD imgBrick per test module: ``(path, images)`` (see :func:`tests.builders.nsd.write_stimuli`)."""
    from tests.builders.nsd import write_stimuli

    return write_stimuli(tmp_path_factory.mktemp("nsd-stimuli"))


@pytest.fixture(scope="module")
def edf_dir():
    """The real EDF/BDF recordings that ship inside the pyedflib wheel (a dev dependency)."""
    from tests.builders.raw_eeg import pyedflib_recordings

    folder = pyedflib_recordings()
    if folder is None:
        pytest.skip("pyedflib (dev dependency) ships the EDF/BDF test recordings")
    return folder
