"""Small files in the layout EEG-ImageNet ships: ``eeg_*_std.pth`` records, ``block_splits_by_image_*.pth`` split
files and ``<synset>/<name>.JPEG`` stimulus folders (2 subjects x 3 classes x 4 images, one block per class)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

SUBJECTS = (1, 2)
SYNSETS = ("n01000001", "n02000002", "n03000003")
N_IMG = 4  # images per class; each subject sees each image once, class by class (one block per class)
N_REC = len(SUBJECTS) * len(SYNSETS) * N_IMG
MARGIN = (255, 0, 0)


def record_number(subject: int, cls: int, k: int) -> int:
    """Position in 'dataset' of subject's record of image k of class cls (records in block order)."""
    return (SUBJECTS.index(subject) * len(SYNSETS) + cls) * N_IMG + k


def centre_colour(i: int) -> tuple[int, int, int]:
    return (15 * i % 200, 140, 230 - 12 * i)


def build(tmp_path, n_channels=4, lengths=None, mutate=None, legacy=False, write_images=True):
    """Write eeg.pth and <root>/<synset>/<name>.JPEG; return the paths and the stored dict."""
    gen = torch.Generator().manual_seed(0)
    names = [f"{syn}_{100 + k}" for syn in SYNSETS for k in range(N_IMG)]
    images = [names[i] for i in np.random.default_rng(0).permutation(len(names))]  # not in class order
    records = []
    for s in SUBJECTS:
        for c, syn in enumerate(SYNSETS):
            for k in range(N_IMG):
                n = record_number(s, c, k)
                length = 500 + (7 * n) % 20 if lengths is None else lengths.get(n, 500)
                records.append({"eeg": torch.randn(n_channels, length, generator=gen),
                                "image": images.index(f"{syn}_{100 + k}"), "label": c, "subject": s})
    data = {"dataset": records, "labels": list(SYNSETS), "images": images}
    if mutate is not None:
        mutate(data)
    eeg_path = tmp_path / "eeg_5_95_std.pth"
    torch.save(data, eeg_path, _use_new_zipfile_serialization=not legacy)
    root = tmp_path / "imageNet_images"
    root.mkdir(exist_ok=True)
    if write_images:
        for i, name in enumerate(images):
            w, h = (36, 24) if i % 2 else (24, 30)
            side = min(w, h)
            img = Image.new("RGB", (w, h), MARGIN)
            img.paste(Image.new("RGB", (side, side), centre_colour(i)), ((w - side) // 2, (h - side) // 2))
            (root / name.split("_")[0]).mkdir(exist_ok=True)
            img.save(root / name.split("_")[0] / f"{name}.JPEG", quality=95)
    return {"eeg": str(eeg_path), "root": str(root), "data": data}


def write_splits(tmp_path, train, val, test, name="block_splits_by_image_single.pth", extra=()):
    path = tmp_path / name
    torch.save({"splits": [{"train": list(train), "val": list(val), "test": list(test)}, *extra]}, path)
    return str(path)


def per_class(k_values, subjects_offset=0):
    """Indices (into a subject's block-ordered list, or the full list) of images k in k_values of every class."""
    return [subjects_offset + c * N_IMG + k for c in range(len(SYNSETS)) for k in k_values]
