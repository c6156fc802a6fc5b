"""Accuracy/latency comparison reports, for any task: numbers only from ``evaluate`` and ``bench``.

Every engine (and the torch FP32 reference) is evaluated on the same data with the same code as
``edgeres eval`` and timed with the same code as ``edgeres bench``; the report is written as
``report.json`` (for CI gates), ``report.md`` and a self-contained ``report.html`` with plots.
The task's own metrics fill the columns (``Task.report_columns``) and its primary metric is what the plots
and the ``--baseline`` gate use.

- ``rows``: evaluate and time every engine into the report dict;
- ``gate``: the regression gate against a baseline report;
- ``plots``, ``render``: the PNG plots, report.md and report.html, and writing the folder.
"""

from __future__ import annotations

from edgeres.report.gate import compare_to_baseline, load_baseline, resolve_max_drop
from edgeres.report.render import render_html, render_markdown, write_report
from edgeres.report.rows import REPORT_SCHEMA, ReportConfig, build_report

__all__ = [
    "REPORT_SCHEMA",
    "ReportConfig",
    "build_report",
    "compare_to_baseline",
    "load_baseline",
    "render_html",
    "render_markdown",
    "resolve_max_drop",
    "write_report",
]
