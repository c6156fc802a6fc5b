"""Library warnings as the CLI prints them: "note: ..." for choices the user should see, "warning: ..." for the
rest, after the command's work (a Python warning line with a file and line number means nothing to a user)."""

from __future__ import annotations

import contextlib
import warnings


@contextlib.contextmanager
def printed_warnings(notes_only: bool = False):
    """Collect warnings raised inside the block and print them on stderr once it succeeds (a failure is one error
    line, alone). ``notes_only``: print only the notes this way and show other warnings as Python would."""
    from edgeres.cli.console import make_console
    from edgeres.quant.workflow import CalibrationNote

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    console = make_console(stderr=True)
    for w in caught:
        if issubclass(w.category, CalibrationNote):
            console.print(f"note: {w.message}", markup=False)
        elif notes_only:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        elif issubclass(w.category, UserWarning):
            console.print(f"[yellow]warning:[/] {w.message}")
