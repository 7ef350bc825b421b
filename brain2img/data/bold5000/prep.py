"""Pure steps of the BOLD5000 datamodule: the ROI setting, ROI columns, trial -> image, the split, the images.

Kept apart from :mod:`brain2img.data.bold5000.files` (which reads files) so each can be tested on arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brain2img.data.bold5000.files import HEMISPHERES, ROIS
from brain2img.data.splits import split_fixed_test


def roi_list(rois: str | list[str]) -> list[str]:
    """A ROI name or a list of names, checked against :data:`~brain2img.data.bold5000.files.ROIS`, in the
    reference's order of concatenation (EarlyVis, LOC, OPA, PPA, RSC) whatever the order given.

    Raises:
        ValueError: an unknown or repeated name, or none.
    """
    names = [rois] if isinstance(rois, str) else list(rois)
    unknown = [n for n in names if n not in ROIS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"rois must be distinct names among {list(ROIS)}, got {rois!r}"
                         + (f" (unknown: {unknown})" if unknown else ""))
    return [r for r in ROIS if r in names]


def roi_column_map(widths: dict[tuple[str, str], int]) -> dict[str, list[int]]:
    """Columns of each ROI in the served vector, the files concatenated in the order of ``widths`` (per ROI the
    left then the right hemisphere, as :func:`~brain2img.data.bold5000.files.roi_files` lists them).

    Args:
        widths: ``(roi, hemisphere) -> n_voxels`` in the order of concatenation.

    Returns:
        ROI name -> the columns of both its hemispheres (``"EarlyVis"`` = LH EarlyVis then RH EarlyVis).
    """
    out: dict[str, list[int]] = {}
    start = 0
    for (roi, hemisphere), width in widths.items():
        assert hemisphere in HEMISPHERES
        out.setdefault(roi, []).extend(range(start, start + width))
        start += width
    return out


def trial_stimuli(names: list[str], sources: list[tuple[Path, int]], image_names: list[str], img_path: Path
                  ) -> np.ndarray:
    """Stimulus id of each trial: the position of its image name in the sorted names of ``img_dict.npy``.

    Args:
        names: image name of each trial.
        sources: ``(list file, line)`` of each trial (for the error).
        image_names: the sorted keys of ``img_dict.npy``.
        img_path: ``img_dict.npy`` (for the error).

    Raises:
        ValueError: a trial names an image that ``img_dict.npy`` does not hold (the list file and line are named).
    """
    position = {name: k for k, name in enumerate(image_names)}
    ids = np.empty(len(names), dtype=np.int64)
    for trial, name in enumerate(names):
        if name not in position:
            path, line = sources[trial]
            raise ValueError(f"BOLD5000 presentation list '{path}' line {line} (trial {trial}): image '{name}' is "
                             f"not a key of the image dict '{img_path}' ({len(image_names)} images)")
        ids[trial] = position[name]
    return ids


def bold5000_splits(stimulus_names: list[str], repeated: list[str], val_fraction: float, seed: int
                    ) -> dict[str, np.ndarray]:
    """Stimulus positions of each split: test = the repeated images shown, val = a seeded ``val_fraction`` of the
    others (at least one), train = the rest.

    Args:
        stimulus_names: image name of each stimulus position.
        repeated: names of ``repeated_stimuli_113_list.txt`` (names never shown to the subject are left out, as
            the reference does for CSI4).
        val_fraction: ``0 < val_fraction < 1``.
        seed: seed of the val draw.

    Raises:
        ValueError: no repeated image was shown (empty test split), or no training image would be left.
    """
    wanted = set(repeated)
    is_test = np.asarray([name in wanted for name in stimulus_names], dtype=bool)
    return split_fixed_test(is_test, val_fraction, seed, 5000, "no image of repeated_stimuli_113_list.txt was shown "
                            "to the subject: the test split would be empty", "non-repeated images")


def square_image(image: np.ndarray, size: int, name: str, img_path: Path) -> np.ndarray:
    """A square uint8 ``(S, S, 3)`` image as ``(size, size, 3)`` (PIL bicubic resize unless ``S == size``).

    Raises:
        ValueError: the image is not square (the reference's images are 256 x 256; nothing is cropped here).
    """
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"BOLD5000 image dict '{img_path}': image '{name}' is {image.shape[0]} x {image.shape[1]}, "
                         "expected a square (256 x 256 in the published file)")
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)
