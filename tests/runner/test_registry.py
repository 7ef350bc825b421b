"""The registry of methods and datamodules, ``brain2img list``, ``brain2img --help`` and the library/runner split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import yaml

from brain2img import registry
from brain2img.cli import main
from brain2img.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
BASE = {"method": L.LightningModule, "datamodule": L.LightningDataModule}


@pytest.mark.parametrize("entry", registry.ENTRIES, ids=[e.name for e in registry.ENTRIES])
def test_every_entry_imports(entry):
    cls = registry.resolve(entry.name)
    assert issubclass(cls, BASE[entry.kind]) and f"{cls.__module__}.{cls.__qualname__}".endswith(cls.__name__)
    assert entry.description and "\n" not in entry.description


def test_names_are_unique_and_lookups_fail_clearly():
    names = [e.name for e in registry.ENTRIES]
    assert len(names) == len(set(names)) and {e.kind for e in registry.ENTRIES} == set(registry.KINDS)
    assert [e.name for e in registry.entries("method")] == ["osaka", "mindeye", "dreamdiffusion", "eeg_pretrain",
                                                            "dcmae", "dcmae_cross", "fmri_pretrain"]
    with pytest.raises(KeyError, match="no method or datamodule called 'nope'.*osaka"):
        registry.get("nope")
    with pytest.raises(ValueError, match="unknown registry kind"):
        registry.entries("model")


def test_config_class_paths_are_registered():
    """The YAML configs name classes by the registry's paths (so a moved module is updated in both)."""
    paths = {e.path for e in registry.ENTRIES}
    for config in sorted((ROOT / "conf").rglob("*.yaml")):
        raw = yaml.safe_load(config.read_text())
        for key in ("model", "data"):
            if isinstance(raw.get(key), dict) and "class_path" in raw[key]:
                assert raw[key]["class_path"] in paths, f"{config.name}: {raw[key]['class_path']} is not registered"


def test_list_prints_every_entry(capsys):
    main(["list"])
    lines = capsys.readouterr().out.splitlines()
    for entry in registry.ENTRIES:
        assert any(line.split()[:2] == [entry.name, entry.path] and entry.description in line for line in lines)
    main(["list", "--kind", "method"])
    out = capsys.readouterr().out
    assert "brain2img.methods.MindEye" in out and "datamodule" not in out and "NSDDataModule" not in out


def test_list_has_its_own_help_and_refuses_bad_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "--help"])
    assert exc.value.code == 0 and "usage: brain2img list" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["list", "--kind", "model"])
    assert exc.value.code != 0 and "invalid choice" in capsys.readouterr().err


def test_main_help_is_brain2img_s_and_names_the_other_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert "Lightning Trainer command line tool" not in out and out.count("brain2img: reconstruct seen images") == 1
    for name in ("fit", "predict", *COMMANDS):
        assert name in out
    assert "other commands" in out and "list  print the registered methods" in out


def test_library_does_not_import_the_runner():
    code = ("import sys; import brain2img.encoders, brain2img.diffusion, brain2img.diffusion.prior, brain2img.metrics, "
            "brain2img.losses, brain2img.presets; "
            "print(sorted(m for m in sys.modules if m.startswith(('brain2img.cli', 'brain2img.commands', "
            "'brain2img.registry', 'brain2img.methods', 'lightning.pytorch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300).stdout
    assert out.strip() == "[]"
