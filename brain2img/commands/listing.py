"""``brain2img list``: the registered methods and datamodules, one line each (name, class path, description)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from brain2img import registry


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``brain2img list``."""
    parser = argparse.ArgumentParser(
        prog="brain2img list", description="Print the registered methods and datamodules: short name, class path "
        "(what a config's class_path names) and one line on each.")
    parser.add_argument("--kind", choices=registry.KINDS, default=None, help="only this kind (default: both)")
    return parser


def format_entries(kind: str | None = None) -> str:
    """The table ``brain2img list`` prints: a heading per kind, then ``name  class path  description`` lines."""
    blocks = []
    for k in registry.KINDS if kind is None else (kind,):
        rows = registry.entries(k)
        name_w = max(len(e.name) for e in rows)
        path_w = max(len(e.path) for e in rows)
        lines = [f"  {e.name:<{name_w}}  {e.path:<{path_w}}  {e.description}" for e in rows]
        blocks.append(f"{k}s:\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and print the table."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    sys.stdout.write(format_entries(args.kind) + "\n")
    return 0
