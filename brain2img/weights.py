"""Load the weights of one sub-module from a checkpoint by key prefix, with errors that say what does not fit.

A pre-training stage saves a whole LightningModule (``mae.encoder.*``, ``mae.decoder.*`` ...); the next stage
needs one part of it (the encoder). :func:`load_by_prefix` takes the keys under a prefix, checks them against the
module (missing keys, unexpected keys, shapes) and loads them strictly. Checkpoints are read with
``torch.load(weights_only=True)`` through :func:`brain2img.io.load_torch`: no pickled code runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from brain2img.io import load_torch


def state_under(state: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` whose key starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_by_prefix(module: nn.Module, path: str | Path, prefix: str, what: str,
                   ignore_missing: Iterable[str] = (), keep_if_resized: Iterable[str] = ()) -> dict[str, Any]:
    """Load ``module`` from the entries ``<prefix>*`` of the checkpoint at ``path`` (its ``state_dict``, or the file
    itself when it is a plain state dict).

    Args:
        module: the module to fill (its keys are the checkpoint's keys without ``prefix``).
        path: a ``torch.save`` file (a Lightning checkpoint or a state dict).
        prefix: e.g. ``"mae.encoder."``.
        what: what the checkpoint should hold, for messages (e.g. ``"a MaskedSignalPretraining checkpoint"``).
        ignore_missing: module keys that may be absent from the checkpoint (e.g. unused buffers).
        keep_if_resized: module keys whose checkpoint value may have another shape, in which case the module's own
            value is kept (fixed tables that depend on the input length, e.g. sine-cosine ``pos_embed``).

    Returns:
        The checkpoint's ``hyper_parameters`` (empty when it has none), for callers that check sizes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: no ``<prefix>*`` entries, or entries that do not fit the module (the first mismatches named).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' not found (expected {what})")
    ckpt = load_torch(path, "checkpoint")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else {}
    sub = state_under(state, prefix)
    if not sub:
        raise ValueError(f"checkpoint '{path}' has no '{prefix}*' weights: expected {what}")
    own = module.state_dict()
    for key in keep_if_resized:
        if key in sub and key in own and sub[key].shape != own[key].shape:
            sub[key] = own[key]
    wrong = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in sub.items() if k in own and v.shape != own[k].shape}
    missing = sorted(set(own) - set(sub) - set(ignore_missing))
    unexpected = sorted(set(sub) - set(own))
    if wrong or missing or unexpected:
        parts = [f"{k}: checkpoint {a} vs model {b}" for k, (a, b) in list(wrong.items())[:4]]
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
        raise ValueError(f"checkpoint '{path}' ({what}; saved with {_summary(hparams)}) does not fit "
                         f"{type(module).__name__}: {'; '.join(parts)}")
    module.load_state_dict({**{k: own[k] for k in ignore_missing if k in own and k not in sub}, **sub}, strict=True)
    return ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}


def _summary(hparams: dict[str, Any]) -> str:
    """The size-relevant hyperparameters of a checkpoint, for messages."""
    keys = [k for k in ("brain_shape", "encoder", "network") if k in hparams]
    return ", ".join(f"{k} {hparams[k]}" for k in keys) or "no recorded hyperparameters"
