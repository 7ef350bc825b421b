"""A config fragment that feeds two ROIs of one NSD brain vector to the Osaka method's two ridges."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_roi_columns_config(path: str | Path, z_roi: str, c_roi: str, **datamodule_kwargs: Any) -> dict[str, Any]:
    """Write a config fragment that feeds two ROIs of one NSD brain vector to the Osaka method's two ridges.

    Builds :class:`NSDDataModule` from ``datamodule_kwargs`` (only the ROI volumes are read) and writes YAML with
    ``data.init_args.{subject, roi}`` (which fix the columns) and ``model.init_args.{z_columns, c_columns}`` =
    :attr:`NSDDataModule.roi_columns` of ``z_roi`` and ``c_roi``. Use it as a second config:
    ``brain2img fit --config conf/osaka/nsd.yaml --config <path>``.

    Args:
        path: YAML file to write (parent folders are created).
        z_roi: ROI whose voxels predict the latent z (reference: ``early``).
        c_roi: ROI whose voxels predict the condition c (reference: ``ventral``).
        **datamodule_kwargs: :class:`NSDDataModule` arguments (``root``, ``subject``, ``roi``, ROI paths ...).

    Returns:
        The written config as a dict.

    Raises:
        ValueError: ``z_roi`` or ``c_roi`` is not one of the datamodule's ``roi``.
    """
    import yaml

    from brain2img.data.nsd import NSDDataModule

    dm = NSDDataModule(**datamodule_kwargs)
    cols = dm.roi_columns
    for arg, name in (("z_roi", z_roi), ("c_roi", c_roi)):
        if name not in cols:
            raise ValueError(f"{arg}={name!r} is not one of the datamodule's ROIs {list(cols)}: add it to roi")
    config = {"data": {"init_args": {"subject": dm.subject, "roi": dm.roi}},
              "model": {"init_args": {"z_columns": cols[z_roi], "c_columns": cols[c_roi]}}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Osaka ROI inputs for NSD subject {dm.subject}: z <- {z_roi} ({len(cols[z_roi])} columns), "
              f"c <- {c_roi} ({len(cols[c_roi])} columns) of the {dm.brain_shape[0]} voxels of roi {dm.roi}.\n"
              f"# Written by brain2img.data.nsd.write_roi_columns_config; use as a second --config.\n")
    path.write_text(header + yaml.safe_dump(config, default_flow_style=None, width=120, sort_keys=False))
    return config
