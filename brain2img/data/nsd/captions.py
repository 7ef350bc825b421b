"""COCO captions of the NSD images, read the way the reference does (``NSDAccess.read_image_coco_info``).

NSD ships, relative to its root:

- ``nsddata/experiments/nsd/nsd_stim_info_merged.csv``: one row per 73k image in 73k order (row ``i`` = 0-based
  73k id ``i``; its ``nsdId`` column, when present, repeats that index), with the image's ``cocoId`` and ``cocoSplit``
  (``train2017`` or ``val2017``).
- ``nsddata_stimuli/stimuli/nsd/annotations/captions_{train2017,val2017}.json``: the COCO 2017 caption annotations
  (``{"annotations": [{"image_id": cocoId, "caption": str, ...}, ...], ...}``), usually five captions per image.

:class:`NSDCaptions` maps 73k ids to their list of captions, loading each file once and only when needed. Every
problem names the file: a missing file or column, a 73k id beyond the table, an image without captions.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from brain2img.io import read_json, reading

STIM_INFO_COLUMNS = ("cocoId", "cocoSplit")
COCO_SPLITS = ("train2017", "val2017")


def stim_info_file(root: str | Path) -> Path:
    """``nsd_stim_info_merged.csv`` under the NSD root."""
    return Path(root) / "nsddata" / "experiments" / "nsd" / "nsd_stim_info_merged.csv"


def annotations_dir(root: str | Path) -> Path:
    """The folder of NSD's copy of the COCO 2017 annotation files."""
    return Path(root) / "nsddata_stimuli" / "stimuli" / "nsd" / "annotations"


def read_stim_info(path: str | Path) -> list[tuple[int, str]]:
    """``(cocoId, cocoSplit)`` of every 73k image, indexed by 0-based 73k id.

    Raises:
        FileNotFoundError: the file is missing. ValueError: a column is missing, a cell is not an integer, a split
            is not a COCO 2017 split, or ``nsdId`` disagrees with the row order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NSD stimulus table '{path}' not found (nsd_stim_info_merged.csv, shipped in "
                                "nsddata/experiments/nsd/); it maps 73k ids to COCO ids for the captions")
    rows: list[tuple[int, str]] = []
    with reading(path, "comma-separated text", "NSD stimulus table (nsd_stim_info_merged.csv)"), \
            path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields, records = reader.fieldnames, list(reader)
    missing = [c for c in STIM_INFO_COLUMNS if c not in (fields or [])]
    if missing:
        raise ValueError(f"NSD stimulus table '{path}' has no column(s) {missing}; columns: {fields}")
    for line, row in enumerate(records, start=2):
        try:
            coco_id = int(row["cocoId"])
            nsd_id = int(row["nsdId"]) if row.get("nsdId") not in (None, "") else len(rows)
        except ValueError as err:
            raise ValueError(f"NSD stimulus table '{path}' line {line}: cocoId/nsdId must be integers "
                             f"({err})") from err
        if nsd_id != len(rows):
            raise ValueError(f"NSD stimulus table '{path}' line {line}: nsdId {nsd_id} but this is row "
                             f"{len(rows)}; rows must be in 73k order (row i = 73k id i, 0-based)")
        if row["cocoSplit"] not in COCO_SPLITS:
            raise ValueError(f"NSD stimulus table '{path}' line {line}: cocoSplit {row['cocoSplit']!r} is not "
                             f"one of {COCO_SPLITS}")
        rows.append((coco_id, row["cocoSplit"]))
    return rows


def read_coco_captions(path: str | Path) -> dict[int, list[str]]:
    """COCO image id -> its captions (annotation order) from a ``captions_*.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO caption file '{path}' not found (NSD ships it in nsddata_stimuli/stimuli/"
                                "nsd/annotations/; set the captions folder or the NSD root)")
    data = read_json(path, "COCO captions")
    try:
        annotations = data["annotations"]
        out: dict[int, list[str]] = defaultdict(list)
        for a in annotations:
            out[int(a["image_id"])].append(str(a["caption"]).strip())
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"COCO caption file '{path}' is not a COCO captions file: expected {{'annotations': "
                         f"[{{'image_id': int, 'caption': str}}, ...]}} ({type(err).__name__}: {err})") from err
    return dict(out)


class NSDCaptions:
    """The COCO captions of NSD images by 0-based 73k id.

    Args:
        root: NSD root; gives the default locations of both inputs.
        stim_info: ``nsd_stim_info_merged.csv`` (overrides ``root``).
        annotations: folder with ``captions_train2017.json`` and ``captions_val2017.json`` (overrides ``root``).
    """

    def __init__(self, root: str | Path | None = None, stim_info: str | Path | None = None,
                 annotations: str | Path | None = None) -> None:
        if root is None and (stim_info is None or annotations is None):
            raise ValueError("NSDCaptions needs the NSD root, or both stim_info (nsd_stim_info_merged.csv) and "
                             "annotations (the folder of captions_{train,val}2017.json)")
        self.stim_info = Path(stim_info) if stim_info is not None else stim_info_file(root)
        self.annotations = Path(annotations) if annotations is not None else annotations_dir(root)
        self._table: list[tuple[int, str]] | None = None
        self._captions: dict[str, dict[int, list[str]]] = {}

    def caption_file(self, split: str) -> Path:
        """The COCO caption file of ``split``."""
        return self.annotations / f"captions_{split}.json"

    def __call__(self, ids: Sequence[int]) -> list[list[str]]:
        """Captions of each 73k id.

        Raises:
            ValueError: an id outside the stimulus table, or an image with no caption in its COCO file.
        """
        if self._table is None:
            self._table = read_stim_info(self.stim_info)
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self._table):
                raise ValueError(f"73k id {i} is not in the NSD stimulus table '{self.stim_info}' "
                                 f"({len(self._table)} rows, ids 0 ... {len(self._table) - 1})")
            coco_id, split = self._table[i]
            if split not in self._captions:
                self._captions[split] = read_coco_captions(self.caption_file(split))
            captions = self._captions[split].get(coco_id)
            if not captions:
                raise ValueError(f"73k id {i} (COCO id {coco_id}, {split}) has no caption in "
                                 f"'{self.caption_file(split)}'")
            out.append(captions)
        return out
