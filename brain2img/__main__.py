"""``python -m brain2img`` = the ``brain2img`` command."""

from brain2img.cli import main

main()
