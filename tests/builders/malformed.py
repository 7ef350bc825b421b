"""Bytes and cut-down copies for malformed-file tests (brain2img.io's openers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# first bytes match no magic; the seed keeps the HDF5 user-block offsets (512, 1024, 2048) signature-free
GARBAGE = b"\x00garbage" + np.random.default_rng(0).bytes(4088)
MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def cut(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    return write(dst, data[: int(len(data) * keep)])
