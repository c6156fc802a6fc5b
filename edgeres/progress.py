"""Rich progress bars, silenced when asked (tests, non-zero ranks, --json)."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Silent:
    console = Console(stderr=True, quiet=True)

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass

    def update(self, *args, **kwargs) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool = True, extra: str = ""):
    """A rich Progress (on stderr) or a silent stand-in with the same methods.

    Args:
        enabled: show the bar.
        extra: a rich markup template of task fields shown after the bar, e.g. "loss {task.fields[loss]:.3f}".
    """
    if not enabled:
        yield _Silent()
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if extra:
        columns.append(TextColumn(extra))
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield bar
