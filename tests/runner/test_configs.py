"""Every YAML under conf/ resolves through the CLI (fragments on top of the quick start, real-data configs with
dummy paths), the typed nested parts show in --help and refuse misspelt keys, and each spec builds what the former
dict parameters built."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from brain2img.cli import main
from brain2img.diffusion.prior import prior_config
from brain2img.diffusion.tiny import TinyConfig
from brain2img.encoders.mae1d import eeg_mae_config
from brain2img.encoders.mindeye import low_level_config, mindeye_config
from brain2img.metrics import ReconstructionMetrics
from brain2img.specs import (
    BackboneSpec,
    CaptionsSpec,
    ClassifierSpec,
    EEGEncoderSpec,
    LowLevelSpec,
    MetricsSpec,
    NetworkSpec,
    PriorSpec,
)

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
BASE = CONF / "quickstart.yaml"
CONFIGS = sorted(CONF.rglob("*.yaml"))
ENV = re.compile(r"\$\{oc\.env:(\w+)(?:,([^}]*))?\}")


def _is_fragment(raw: dict) -> bool:
    """A fragment sets parts of a config but names no method or datamodule: it composes on top of a full config."""
    return not any(isinstance(raw.get(k), dict) and "class_path" in raw[k] for k in ("model", "data"))


def _print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exc:
        main(["fit", *args, "--print_config"])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err[-3000:]
    return yaml.safe_load(out.out)


def _assert_within(expected: Any, printed: Any, where: str) -> None:
    """Every value of ``expected`` (a YAML file) is in ``printed`` (the resolved config), at the same place."""
    if isinstance(expected, dict):
        assert isinstance(printed, dict), f"{where}: expected a mapping, printed {printed!r}"
        for key, value in expected.items():
            assert key in printed, f"{where}.{key} is missing from the resolved config"
            _assert_within(value, printed[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(printed, list) and len(printed) == len(expected), f"{where}: {printed!r} != {expected!r}"
        for i, (a, b) in enumerate(zip(expected, printed, strict=True)):
            _assert_within(a, b, f"{where}[{i}]")
    else:
        assert printed == expected, f"{where}: resolved {printed!r}, the file says {expected!r}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONF)) for p in CONFIGS])
def test_every_config_resolves(path, capsys, monkeypatch):
    text = path.read_text()
    env = {name: f"/dummy/{name.lower()}" for name, _ in ENV.findall(text)}
    for name, value in env.items():  # real-data configs read their paths from the environment
        monkeypatch.setenv(name, value)
    raw = yaml.safe_load(ENV.sub(lambda m: env[m.group(1)], text))
    assert isinstance(raw, dict)
    if _is_fragment(raw):
        printed = _print_config(capsys, "--config", str(BASE), "--config", str(path))
    else:
        printed = _print_config(capsys, "--config", str(path))
        assert printed["model"]["class_path"].startswith("brain2img.methods.")
    _assert_within(raw, printed, path.name)
    for value in env.values():
        assert value in yaml.safe_dump(printed)


def test_quickstart_and_pretraining_values(capsys):
    printed = _print_config(capsys, "--config", str(BASE))
    assert printed["model"]["class_path"] == "brain2img.methods.OsakaMethod"
    assert printed["model"]["init_args"]["strength"] == 0.8
    for name in ("pretrain_simulated", "pretrain_raw_eeg", "pretrain_eeg_imagenet"):
        printed = _print_config(capsys, "--config", str(CONF / "dreamdiffusion" / f"{name}.yaml"))
        assert printed["model"]["class_path"] == "brain2img.methods.MaskedSignalPretraining"
        assert printed["model"]["init_args"]["mask_ratio"] == 0.75  # the paper's ratio, not the code's 0.1


def test_backbone_fragment_composes_without_changing_the_quickstart(capsys):
    base = _print_config(capsys, "--config", str(BASE))["model"]["init_args"]
    composed = _print_config(capsys, "--config", str(BASE), "--config", str(CONF / "backbone" / "tiny_simulated.yaml"))
    composed = composed["model"]["init_args"]
    assert {k: v for k, v in composed.items() if k != "backbone"} == {k: v for k, v in base.items() if k != "backbone"}
    old, new = BackboneSpec.coerce(base["backbone"]), BackboneSpec.coerce(composed["backbone"])
    assert new.preset == old.preset == "tiny_simulated" and new.config() == old.config() == TinyConfig()
    assert new.config().digest() == TinyConfig().digest()  # the same cached generator
    assert new.kwargs()["cache_dir"] == old.kwargs()["cache_dir"]


def test_method_help_lists_the_nested_fields(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--model.help", "brain2img.methods.MindEye"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # help text is wrapped
    for option, text in [("--model.network.h", "backbone width."), ("--model.network.preset", "paper (MindEye1"),
                         ("--model.prior.depth", "transformer blocks"), ("--model.prior.preset", "null: no prior"),
                         ("--model.backbone.path", "sd (required)"), ("--model.backbone.unet_channels", "UNet block"),
                         ("--model.low_level.seed_side", "side of that map"), ("--model.metrics.classifier.kind", "")]:
        assert option in out and text in out, option
    for fixed in ("--model.network.n_voxels", "--model.prior.dim ", "--model.low_level.latent_shape"):
        assert fixed not in out  # set by the method from the data


@pytest.mark.parametrize(("args", "key"), [
    (["--model.init_args.network.hh", "3"], "network.hh"),
    (["--model.init_args.prior.depht", "3"], "prior.depht"),
    (["--model.init_args.backbone.unet_chanels", "[8]"], "backbone.unet_chanels"),
])
def test_misspelt_nested_key_fails_at_parse_time(args, key, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(CONF / "mindeye" / "simulated.yaml"), *args, "--print_config"])
    assert exc.value.code != 0
    assert key in capsys.readouterr().err


def test_misspelt_nested_key_in_yaml_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    metrics:\n      n_wya: 3\n")
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(BASE), "--config", str(bad), "--print_config"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "Group 'metrics' does not accept option 'n_wya'" in err


# ------------------------------------------------------------------------------------------------ specs
@pytest.mark.parametrize("preset", ["paper", "tiny"])
def test_specs_build_what_the_dict_path_built(preset):
    net = {"h": 32, "drop_in": 0.1}
    assert NetworkSpec(preset=preset, **net).config(n_voxels=50, clip_tokens=5, clip_dim=16) == mindeye_config(
        preset, **net, n_voxels=50, clip_tokens=5, clip_dim=16)
    assert NetworkSpec.coerce({"preset": preset}).config(n_voxels=9, clip_tokens=2, clip_dim=4) == mindeye_config(
        preset, n_voxels=9, clip_tokens=2, clip_dim=4)
    prior, dim = {"depth": 1, "ff_mult": 1.0}, 768 if preset == "paper" else 32  # dim_head x heads of the preset
    assert PriorSpec.coerce({"preset": preset, **prior}).config(dim=dim, num_tokens=5) == prior_config(
        preset, **prior, dim=dim, num_tokens=5)
    shape = (4, 64, 64) if preset == "paper" else (4, 8, 8)
    assert LowLevelSpec(preset=preset).config(n_voxels=30, latent_shape=shape) == low_level_config(
        preset, n_voxels=30, latent_shape=shape)
    assert EEGEncoderSpec(preset=preset, depth=1).config(n_channels=8, n_times=32, mask_ratio=0.5) == eeg_mae_config(
        preset, depth=1, n_channels=8, n_times=32, mask_ratio=0.5)


def test_a_dict_without_preset_is_tiny_and_none_is_the_default():
    assert NetworkSpec.coerce({"h": 8}).preset == "tiny" == NetworkSpec.coerce(None).preset
    assert PriorSpec.coerce({"depth": 1}).preset == "tiny"
    assert PriorSpec.coerce(None).to_dict() is None and LowLevelSpec.coerce(None).to_dict() is None
    assert BackboneSpec.coerce(None).to_dict() == {"preset": "tiny"}
    assert EEGEncoderSpec.coerce(None).to_dict() == {"preset": "tiny"}
    assert CaptionsSpec.coerce(None).to_dict() is None and CaptionsSpec(root="nsd").to_dict() == {
        "root": "nsd", "max_length": 77, "batch_size": 64}


def test_fields_the_method_sets_and_unknown_fields_are_refused():
    with pytest.raises(ValueError, match=r"model.network: \['clip_dim', 'n_voxels'\] cannot be set"):
        NetworkSpec.coerce({"n_voxels": 3, "clip_dim": 4})
    with pytest.raises(ValueError, match=r"model.prior: \['dim'\] cannot be set"):
        PriorSpec.coerce({"preset": "paper", "dim": 3})
    with pytest.raises(ValueError, match=r"model.encoder: \['mask_ratio'\] cannot be set.*mask_ratio"):
        EEGEncoderSpec.coerce({"mask_ratio": 0.5})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['hh'\]"):
        NetworkSpec.coerce({"hh": 3})
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        NetworkSpec(preset="huge")


def test_off_parts():
    with pytest.raises(ValueError, match=r"model.prior.preset is null.*\['depth'\]"):
        PriorSpec(preset=None, depth=1)
    with pytest.raises(ValueError, match="model.low_level is off"):
        LowLevelSpec(preset=None).config()
    with pytest.raises(ValueError, match=r"model.captions: \['text_encoder'\] are set but no caption source"):
        CaptionsSpec(text_encoder="sd")
    with pytest.raises(ValueError, match=r"\['weights_path'\] are set but kind is null"):
        ClassifierSpec(weights_path="w.pth")
    assert MetricsSpec().to_dict()["classifier"] is None


def test_backbone_fields_of_another_preset_are_refused():
    with pytest.raises(ValueError, match=r"preset 'tiny' does not read \['path'\].*path \(sd\)"):
        BackboneSpec(preset="tiny", path="weights/sd")
    with pytest.raises(ValueError, match=r"preset 'sd' does not read \['unet_channels'\].*tiny/tiny_simulated"):
        BackboneSpec.coerce({"preset": "sd", "path": "x", "unet_channels": [8, 16]})
    # the cache folder of tiny_simulated is ignored by the others, so switching the preset of a config needs no null
    assert BackboneSpec(preset="tiny", cache_dir=".cache/x").kwargs() == {"preset": "tiny"}
    sd = {"preset": "sd", "path": "weights/sd", "image_size": 320, "n_tokens": 77}
    assert BackboneSpec.coerce(sd).kwargs() == sd
    small = {"preset": "tiny", "image_size": 16, "vae_channels": [8, 16], "unet_channels": [16, 32],
             "unet_attention": [False, True]}
    old = TinyConfig.from_dict({k: v for k, v in small.items() if k != "preset"})  # build_backbone(**small)'s config
    assert BackboneSpec.coerce(small).config() == old


def test_metrics_defaults_are_those_of_reconstruction_metrics():
    import inspect

    params = inspect.signature(ReconstructionMetrics.__init__).parameters
    expected = {k: p.default for k, p in params.items() if k not in ("self", "feature_net")}
    values = MetricsSpec().to_dict()
    assert values.pop("classifier") is None and values == expected


def test_hyperparameters_are_plain_data(tmp_path):
    from brain2img.methods import MaskedSignalPretraining

    model = MaskedSignalPretraining(brain_shape=(8, 32), encoder=EEGEncoderSpec(depth=1, embed_dim=32, num_heads=2))
    assert model.hparams.encoder == {"preset": "tiny", "depth": 1, "embed_dim": 32, "num_heads": 2}
    path = tmp_path / "hp.pt"
    torch.save({"hyper_parameters": dict(model.hparams)}, path)
    loaded = torch.load(path, weights_only=True)["hyper_parameters"]
    again = MaskedSignalPretraining(**loaded)  # what load_from_checkpoint does with the stored hyperparameters
    assert again.config == model.config


def test_spec_classes_import_by_path():
    import importlib
    import pickle

    import brain2img.specs as specs

    for name in specs.__all__:
        cls = getattr(specs, name)
        if isinstance(cls, type):
            assert getattr(importlib.import_module(cls.__module__), cls.__qualname__) is cls
            assert pickle.loads(pickle.dumps(cls())) == cls()


def test_checkpoint_config_of_the_dict_parameters_still_parses(tmp_path, capsys):
    """Checkpoints written before the typed parts store absent parts as null; they read as the defaults."""
    from brain2img.callbacks.config_in_checkpoint import CONFIG_KEY
    from brain2img.cli import drop_null_parts

    old = {"captions": None, "metrics": None, "z_columns": None, "backbone": {"preset": "tiny"}, "strength": 0.7}
    assert drop_null_parts("brain2img.methods.OsakaMethod", old) == {
        "z_columns": None, "backbone": {"preset": "tiny"}, "strength": 0.7}
    config = yaml.safe_load(BASE.read_text())
    config["model"]["init_args"].update(old)
    ckpt = tmp_path / "old.ckpt"
    torch.save({CONFIG_KEY: {k: config[k] for k in ("seed_everything", "model", "data")},
                "hyper_parameters": {"brain_shape": (60,), **old}}, ckpt)
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--ckpt_path", str(ckpt), "--print_config"])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err[-2000:]
    model = yaml.safe_load(out.out)["model"]["init_args"]
    assert isinstance(model["captions"], dict) and CaptionsSpec.coerce(model["captions"]).to_dict() is None
    assert model["metrics"]["n_way"] == 50
    assert BackboneSpec.coerce(model["backbone"]).kwargs() == {"preset": "tiny"} and model["strength"] == 0.7
