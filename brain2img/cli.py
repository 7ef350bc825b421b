"""The ``brain2img`` command: ``fit | validate | test | predict`` on LightningCLI, plus brain2img's own commands
(``list``; see :mod:`brain2img.commands`), dispatched before LightningCLI parses anything.

Examples::

    brain2img fit --config conf/quickstart.yaml                 # fit, then test (test_after_fit)
    brain2img fit --config conf/quickstart.yaml --model.init_args.strength=0.7 --trainer.logger.init_args.name=s07
    brain2img fit --config conf/quickstart.yaml --print_config   # the fully resolved config
    brain2img predict --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt --output_dir preds/
    brain2img fit --config conf/quickstart.yaml --config conf/backbone/tiny_simulated.yaml   # compose fragments
    brain2img fit --model.help brain2img.methods.MindEye          # every model option, nested parts included
    brain2img list                                                # the registered methods and datamodules

``predict``/``test``/``validate`` with only ``--ckpt_path`` rebuild model and data from the config stored inside the
checkpoint; any ``--config`` or dotted override given after it still applies.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import os
import sys
import tempfile
import typing
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.model_helpers import is_overridden

from brain2img import commands
from brain2img.callbacks import AtomicCheckpointIO, PredictionWriter
from brain2img.callbacks.config_in_checkpoint import CONFIG_KEY, ConfigInCheckpoint
from brain2img.io import load_torch
from brain2img.presets import Spec

EVAL_SUBCOMMANDS = ("validate", "test", "predict")
DESCRIPTION = """\
brain2img: reconstruct seen images from brain recordings (fMRI, EEG). Any method x any datamodule,
chosen by class_path in YAML:
  brain2img fit --config conf/quickstart.yaml
--config may be repeated (later files and dotted overrides such as --model.init_args.strength=0.7
win: conf/backbone, conf/trainer and conf/logger hold fragments); --print_config shows the resolved
config; `brain2img fit --model.help brain2img.methods.MindEye` lists a method's options, nested
parts included; `brain2img list` names the methods and datamodules."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description and the epilog kept as written (one line per extra command)."""


class Brain2ImgCLI(LightningCLI):
    """LightningCLI with brain2img's defaults: any method x any datamodule chosen by ``class_path`` in YAML."""

    def __init__(self, args: list[str] | None = None, run: bool = True, config_from_ckpt: bool = False,
                 **kwargs: Any) -> None:
        self._config_from_ckpt = config_from_ckpt
        super().__init__(
            model_class=None,
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            parser_kwargs={"parser_mode": "omegaconf", "description": DESCRIPTION, "epilog": commands.epilog(),
                           "formatter_class": _HelpFormatter},
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link data shapes into the model and add brain2img's own options."""
        parser.link_arguments("data.brain_shape", "model.init_args.brain_shape", apply_on="instantiate")
        # methods that read named ROIs (the Osaka method's z_roi / c_roi); skipped for methods without the argument
        parser.link_arguments("data.roi_columns", "model.init_args.roi_columns", apply_on="instantiate")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="fit: run test on the fitted model.")
        parser.add_argument("--output_dir", type=str | None, default=None,
                            help="predict: folder for PNGs, embeddings and manifest (default: <run dir>/predictions).")
        parser.add_argument("--overwrite_predictions", type=bool, default=False,
                            help="predict: allow writing into a folder that already holds predictions.")

    def _parse_ckpt_path(self) -> None:
        """Lightning would overwrite the model config with the checkpoint's hyperparameters after the user's
        overrides; when the checkpoint carries brain2img's full config it was already injected *before* them.
        Otherwise (``--config`` given) Lightning's merge, with the hyperparameters of older checkpoints read as
        :func:`drop_null_parts` says."""
        if self._config_from_ckpt or not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = dict(checkpoint_metadata(ckpt_path)["hyper_parameters"])
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            class_path = hparams.pop("_class_path")
            hparams = {"class_path": class_path, "dict_kwargs": drop_null_parts(class_path, hparams)}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise

    def instantiate_trainer(self, **kwargs: Any):
        """Add the atomic checkpoint plugin and the config-in-checkpoint callback."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        sub = self.config.get("subcommand")
        if sub:
            cfg = self._parser(sub).dump(self.config[sub], format="yaml", skip_link_targets=False, skip_none=False)
            trainer.callbacks.append(ConfigInCheckpoint(_checkpoint_config(yaml.safe_load(cfg))))
        return trainer

    def _check_checkpoint_shape(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if not ckpt_path:
            return
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"--ckpt_path: checkpoint file not found: '{ckpt_path}'")
        hparams = checkpoint_metadata(ckpt_path)["hyper_parameters"]
        expected = tuple(hparams.get("brain_shape", ()))
        given = tuple(getattr(self.datamodule, "brain_shape", ()))
        if expected and given and expected != given:
            raise ValueError(
                f"checkpoint '{ckpt_path}' was trained on brain samples of shape {expected}, but the data "
                f"({type(self.datamodule).__name__}) has shape {given}: the number of voxels/channels must match"
            )

    def before_validate(self) -> None:
        """Check data against the checkpoint."""
        self._check_checkpoint_shape()

    def before_test(self) -> None:
        """Check data against the checkpoint."""
        self._check_checkpoint_shape()

    def before_predict(self) -> None:
        """Check data against the checkpoint and attach the prediction writer."""
        self._check_checkpoint_shape()
        cfg = self.config["predict"]
        run_dir = self.trainer.log_dir or self.trainer.default_root_dir
        out = cfg.get("output_dir") or os.path.join(run_dir, "predictions")
        self.trainer.callbacks.append(PredictionWriter(out, overwrite=cfg.get("overwrite_predictions", False)))
        print(f"brain2img: writing predictions to {out}", file=sys.stderr)

    def after_fit(self) -> None:
        """Test the fitted model unless ``--test_after_fit false``."""
        if not self.config["fit"].get("test_after_fit", True):
            return
        if not is_overridden("test_step", self.model):
            print(f"brain2img: {type(self.model).__name__} has no test step; skipping test_after_fit", file=sys.stderr)
            return
        ckpt = self.trainer.checkpoint_callback
        monitored = ckpt is not None and getattr(ckpt, "monitor", None) and getattr(ckpt, "best_model_path", "")
        if monitored:  # the checkpoint chosen on validation, never the test split
            print(f"brain2img: testing the best checkpoint by {ckpt.monitor}: {ckpt.best_model_path}", file=sys.stderr)
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if monitored else None)


@functools.lru_cache(maxsize=4)
def _metadata(path: str, mtime_ns: int) -> dict[str, Any]:
    ckpt = load_torch(path, "checkpoint (--ckpt_path)", mmap=True)  # tensors memory-mapped, never read here
    if not isinstance(ckpt, dict):
        return {"hyper_parameters": {}, CONFIG_KEY: None}
    return {"hyper_parameters": ckpt.get("hyper_parameters") or {}, CONFIG_KEY: ckpt.get(CONFIG_KEY)}


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``hyper_parameters`` and the stored config of a checkpoint, read once per file version (the CLI asks
    three times per command: config injection, hyperparameter merge, shape check); treat the result as read-only."""
    path = Path(path)
    return _metadata(str(path.resolve()), path.stat().st_mtime_ns)


def drop_null_parts(class_path: str, init_args: dict[str, Any]) -> dict[str, Any]:
    """``init_args`` without the typed parts (:mod:`brain2img.specs`) that are ``None``.

    Checkpoints written before the parts were typed store an absent part as ``null`` (``captions: null``,
    ``prior: null``, ``metrics: null``), which a dataclass-typed argument does not accept; its default means the same
    (off, or the default settings), so the key is left out.
    """
    try:
        module, _, name = class_path.rpartition(".")
        hints = typing.get_type_hints(getattr(importlib.import_module(module), name).__init__)
    except (ImportError, AttributeError, NameError, ValueError):
        return dict(init_args)
    is_part = {k: isinstance(t, type) and issubclass(t, Spec) for k, t in hints.items()}
    return {k: v for k, v in init_args.items() if v is not None or not is_part.get(k, False)}


def _checkpoint_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config needed to rebuild model and data from a checkpoint."""
    return {k: config[k] for k in ("seed_everything", "model", "data") if k in config}


def _inject_checkpoint_config(argv: list[str]) -> tuple[list[str], bool]:
    """For ``validate|test|predict --ckpt_path X`` without ``--config``, prepend the config stored in X."""
    if not argv or argv[0] not in EVAL_SUBCOMMANDS or any(a in ("-c", "--config") or a.startswith("--config=")
                                                          for a in argv):
        return argv, False
    ckpt = None
    for i, arg in enumerate(argv):
        if arg == "--ckpt_path" and i + 1 < len(argv):
            ckpt = argv[i + 1]
        elif arg.startswith("--ckpt_path="):
            ckpt = arg.split("=", 1)[1]
    if not ckpt:
        return argv, False
    if not Path(ckpt).is_file():
        raise SystemExit(f"brain2img: --ckpt_path: checkpoint file not found: '{ckpt}'")
    config = copy.deepcopy(checkpoint_metadata(ckpt)[CONFIG_KEY])
    if not config:
        return argv, False
    model = config.get("model")
    if isinstance(model, dict) and isinstance(model.get("init_args"), dict) and "class_path" in model:
        model["init_args"] = drop_null_parts(model["class_path"], model["init_args"])
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="brain2img-ckpt-config-", delete=False)
    with handle:
        yaml.safe_dump(config, handle)
    # no logger of its own: nothing lands in ./lightning_logs, and the run folder of the checkpoint is the default
    # root (predict writes <run>/predictions); the user's own --trainer.* arguments come later and win.
    ckpt_file = Path(ckpt).resolve()
    run_dir = ckpt_file.parent.parent if ckpt_file.parent.name == "checkpoints" else ckpt_file.parent
    defaults = ["--trainer.logger", "false", "--trainer.default_root_dir", str(run_dir)]
    return [argv[0], "--config", handle.name, *defaults, *argv[1:]], True


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``brain2img`` console script: brain2img's own commands (``list`` ...) by name, else
    LightningCLI (``fit | validate | test | predict``)."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in commands.COMMANDS:
        status = commands.run(argv[0], argv[1:])
        if status:
            raise SystemExit(status)
        return
    new_argv, from_ckpt = _inject_checkpoint_config(argv)
    Brain2ImgCLI(new_argv if (from_ckpt or args is not None) else None, config_from_ckpt=from_ckpt)


if __name__ == "__main__":
    main()
