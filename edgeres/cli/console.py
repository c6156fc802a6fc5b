"""Consoles for the CLI: soft-wrapped, and wide enough for tables when output is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, soft_wrap=True, width=width, highlight=False)
