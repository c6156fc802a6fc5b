"""The tasks edgeres knows, looked up by name from one table.

Each entry names the module whose ``TASK`` (an ``edgeres.tasks.base.Task``) answers what the generic pipeline
asks. Modules are imported on first use, so a task's optional packages stay optional.
"""

from __future__ import annotations

from importlib import import_module

from edgeres.errors import EdgeresError
from edgeres.tasks.base import Task

TASKS: dict[str, str] = {
    "classify": "edgeres.tasks.classify",
    "detect": "edgeres.tasks.detect",
    "segment": "edgeres.tasks.segment",
}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name lists the known ones."""
    if name not in TASKS:
        raise EdgeresError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return import_module(TASKS[name]).TASK


def tasks_taking(option: str) -> list[str]:
    """The tasks that accept a task-specific option (for the message when another task is given it)."""
    return [name for name in TASKS if option in get_task(name).options]


def require_task(found: str, wanted: str, what: str) -> None:
    """A model of task ``found`` given where a ``wanted`` model is required: one line naming both."""
    if found != wanted:
        raise EdgeresError(f"{what} is a {found} model, but a {wanted} model is required here")
