"""Small files in the layout BOLD5000 ships (as MinD-Vis / DC-MAE read it), for subject CSI1.

Under ``root``: ``BOLD5000_GLMsingle_ROI_betas/py/CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{LH|RH}{ROI}.npy``
(float32 ``(N_TRIALS, width)``), ``BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI1/CSI1_sess0S/CSI_sess0S_run0R.txt``
(one name per line, repeated showings prefixed ``rep_``; a ``.mat`` file and a stray ``.txt`` beside the session
folders that the reader must skip), ``BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/img_dict.npy`` (``np.save``
of a dict name -> uint8 ``(SIDE, SIDE, 3)``) and ``BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brain2img.data.bold5000 import files as bf

SIDE = 20  # the published images are 256 x 256
WIDTHS = {("EarlyVis", "LH"): 3, ("EarlyVis", "RH"): 2, ("LOC", "LH"): 2, ("LOC", "RH"): 3, ("OPA", "LH"): 1,
          ("OPA", "RH"): 2, ("PPA", "LH"): 2, ("PPA", "RH"): 1, ("RSC", "LH"): 1, ("RSC", "RH"): 1}
N_VOXELS = sum(WIDTHS.values())
SINGLE = [f"COCO_train2014_{k:012d}.jpg" for k in range(10)] + [f"n0144{k}_{k}.JPEG" for k in range(8)] + [
    f"scene{k}.jpg" for k in range(5)] + ["bedroom_rep_2.jpg"]  # 'rep_' inside a name stays
REPEATED_SHOWN = {"n01440764_10110.JPEG": 3, "COCO_train2014_000000420713.jpg": 4, "airplanecabin1.jpg": 3}
REPEATED = ["COCO_train2014_000000420713.jpg", "unseen_by_csi1.jpg", "n01440764_10110.JPEG", "airplanecabin1.jpg"]
NEVER_SHOWN = ["unseen_by_csi1.jpg", "zz_extra.jpg"]  # in img_dict, in no presentation list
RUNS = (("CSI1_sess01", "CSI_sess01_run01.txt"), ("CSI1_sess01", "CSI_sess01_run02.txt"),
        ("CSI1_sess02", "CSI_sess02_run01.txt"), ("CSI1_sess02", "CSI_sess02_run02.txt"))


def trial_names() -> list[str]:
    """Image name of every trial in presentation order (``rep_`` not yet added): a seeded shuffle."""
    names = SINGLE + [name for name, n in REPEATED_SHOWN.items() for _ in range(n)]
    return [names[i] for i in np.random.default_rng(11).permutation(len(names))]


N_TRIALS = len(trial_names())


def list_lines(names: list[str]) -> list[str]:
    """The listed names: every showing after the first carries ``rep_``."""
    seen: set[str] = set()
    out = []
    for name in names:
        out.append(f"rep_{name}" if name in seen else name)
        seen.add(name)
    return out


def make_images(names: list[str]) -> dict[str, np.ndarray]:
    return {name: np.random.default_rng(100 + k).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
            for k, name in enumerate(sorted(names))}


def make_betas(n_trials: int = N_TRIALS) -> dict[tuple[str, str], np.ndarray]:
    rng = np.random.default_rng(5)
    return {key: (rng.standard_normal((n_trials, w)) * 2 + 0.5).astype(np.float32) for key, w in WIDTHS.items()}


def write_lists(root: Path, lines: list[str]) -> None:
    """Split the lines over the run files (in the sorted order the reader uses)."""
    folder = bf.presentation_dir(root, 1)
    bounds = np.linspace(0, len(lines), len(RUNS) + 1).round().astype(int)
    for (session, run), start, stop in zip(RUNS, bounds[:-1], bounds[1:], strict=True):
        (folder / session).mkdir(parents=True, exist_ok=True)
        (folder / session / run).write_text("\n".join(lines[start:stop]) + "\n")
    (folder / RUNS[0][0] / "CSI_sess01_run01.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # not a list: skipped
    (folder / "notes.txt").write_text("not a session folder: skipped\n")


def build(root: str | Path, betas: dict[tuple[str, str], np.ndarray] | None = None, lines: list[str] | None = None,
          images: dict[str, np.ndarray] | None = None, repeated: list[str] | None = REPEATED) -> dict:
    """Write the CSI1 tree under ``root``; returns what was written (betas, lines, images, repeated)."""
    root = Path(root)
    betas = make_betas() if betas is None else betas
    lines = list_lines(trial_names()) if lines is None else lines
    images = make_images(SINGLE + list(REPEATED_SHOWN) + NEVER_SHOWN) if images is None else images
    for (roi, hemisphere), arr in betas.items():
        path = bf.betas_file(root, 1, hemisphere, roi)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr)
    write_lists(root, lines)
    path = bf.img_dict_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, images, allow_pickle=True)
    if repeated is not None:
        bf.repeated_list_file(root).write_text("\n".join(repeated) + "\n")
    return {"betas": betas, "lines": lines, "images": images, "repeated": repeated}
