"""brain2img's own subcommands, the ones that are not Trainer methods (``fit | validate | test | predict`` are
LightningCLI's): name -> module and one line. Each module has ``main(argv)`` and its own parser, so ``brain2img
<command> --help`` works like the others. Later: ``compare``, ``score``, ``sweep``, ``convert``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("brain2img.commands.listing", "print the registered methods and datamodules (name, class path, one line)"),
}


def epilog() -> str:
    """The extra commands, one line each, for ``brain2img --help``."""
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "other commands (brain2img <command> --help):\n" + "\n".join(lines)


def run(name: str, argv: Sequence[str]) -> int:
    """Run the command ``name`` with its arguments; returns its exit status.

    Raises:
        KeyError: an unknown command (the message lists them).
    """
    if name not in COMMANDS:
        raise KeyError(f"unknown brain2img command {name!r}; commands: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(list(argv)) or 0)
