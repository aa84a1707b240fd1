"""``python -m stacpull`` is the ``stacpull`` command."""

from .cli import main

__all__ = ["main"]

main()
