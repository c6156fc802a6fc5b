"""Every edgeres module imports, and every ``--help`` works, without the optional GPU/benchmark packages;
and the suite itself copes with what a machine lacks (TensorRT, a GPU, system tools).

Each check runs in a fresh interpreter whose import system refuses tensorrt, pycuda, cuda, openvino and nncf,
as on a machine where they are not installed; it also records any attempt to import them, so a module that
imports one at top level (even inside try/except) is caught. Modules are found with pkgutil.walk_packages,
so new ones are covered without editing this file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import trt_unavailable_reason
from helpers import subprocess_env

OPTIONAL = ("tensorrt", "pycuda", "cuda", "openvino", "nncf")

BLOCKER = textwrap.dedent(
    f"""
    import importlib.abc, sys

    OPTIONAL = {OPTIONAL!r}
    ATTEMPTS = []

    class RefuseOptional(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in OPTIONAL:
                ATTEMPTS.append(name)
                raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by test_imports)", name=name)
            return None

    for _name in list(sys.modules):
        if _name.split(".")[0] in OPTIONAL:
            del sys.modules[_name]
    sys.meta_path.insert(0, RefuseOptional())
    """
)

IMPORT_ALL = BLOCKER + textwrap.dedent(
    """
    import importlib, json, pkgutil, traceback

    import edgeres

    failed = {}
    def record(name):
        failed[name] = traceback.format_exc(limit=-3)

    modules = ["edgeres"] + [m.name for m in pkgutil.walk_packages(edgeres.__path__, "edgeres.", onerror=record)]
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            failed[name] = traceback.format_exc(limit=-3)
    attempts = list(ATTEMPTS)
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in OPTIONAL)

    # The blocker itself works: each optional package is unimportable here, even if it is installed.
    blocked = []
    for name in OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            blocked.append(name)
    print(json.dumps({"modules": modules, "failed": failed, "attempts": attempts, "loaded": loaded,
                      "blocked": blocked}))
    """
)

ALL_HELP = BLOCKER + textwrap.dedent(
    """
    import json

    import typer
    from typer.testing import CliRunner

    from edgeres.cli.main import app

    def paths(command, prefix=()):
        yield prefix
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from paths(sub, (*prefix, name))

    runner = CliRunner()
    results = {}
    for path in paths(typer.main.get_command(app)):
        result = runner.invoke(app, [*path, "--help"])
        results[" ".join(path) or "<root>"] = [result.exit_code, "Usage" in result.output, repr(result.exception)]
    print(json.dumps({"results": results, "attempts": ATTEMPTS}))
    """
)


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=subprocess_env(), capture_output=True, text=True, timeout=180
    )


def test_every_module_imports_without_optional_packages():
    proc = _run(IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["blocked"] == list(OPTIONAL)
    modules = report["modules"]
    assert {"edgeres.train", "edgeres.cli.main", "edgeres.models.checkpoint", "edgeres.data.imagefolder"} <= set(
        modules
    )
    assert len(modules) == len(set(modules))
    assert report["failed"] == {}, "\n".join(f"{k}:\n{v}" for k, v in report["failed"].items())
    assert report["attempts"] == [], f"imported at module level: {report['attempts']}"
    assert report["loaded"] == []


def test_edgeres_help_works_without_optional_packages():
    main = BLOCKER + "import sys\nfrom edgeres.cli.main import main\nsys.argv = ['edgeres', '--help']\nmain()\n"
    proc = _run(main)
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout and "train" in proc.stdout and "eval" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_every_command_help_works_without_optional_packages():
    proc = _run(ALL_HELP)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert {"<root>", "train", "eval"} <= set(results)
    broken = {name: r for name, r in results.items() if r[0] != 0 or not r[1]}
    assert broken == {}
    assert report["attempts"] == []


# ---- the suite's own handling of missing things ------------------------------------------------------------

INNER_TESTS = textwrap.dedent(
    """
    import numpy as np
    import pytest
    import torch
    from helpers import require_tool

    START = torch.random.get_rng_state().clone(), np.random.get_state()[1].copy()


    @pytest.mark.needs_trt
    def test_needs_trt():
        raise AssertionError("ran without TensorRT and a GPU")


    def test_missing_tool():
        require_tool("edgeres-no-such-tool")
        raise AssertionError("require_tool returned for a missing tool")


    def test_present_tool():
        assert require_tool("sh").endswith("sh")


    def test_seeding():
        torch.manual_seed(123)
        np.random.seed(123)
        torch.rand(3), np.random.rand(3)


    def test_rng_state_was_restored():
        assert torch.equal(torch.random.get_rng_state(), START[0])
        assert np.array_equal(np.random.get_state()[1], START[1])
    """
)


@pytest.mark.parametrize("ci", [None, "true"])
def test_conftest_skips_trt_and_handles_missing_tools(pytester, monkeypatch, ci):
    here = Path(__file__).parent
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(here / name, pytester.path / name)
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\naddopts = "--strict-markers -p no:cacheprovider"\n'
        'markers = ["slow: long", "needs_trt: TensorRT and a GPU"]\n'
    )
    pytester.makepyfile(test_inner=INNER_TESTS)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-rsf")
    trt_here = trt_unavailable_reason() is None
    missing_tool = {"failed": 1} if ci == "true" else {"skipped": 1}
    expected = {"passed": 3, "failed": 0, "skipped": 0}
    expected["failed" if trt_here else "skipped"] += 1
    for outcome, n in missing_tool.items():
        expected[outcome] += n
    result.assert_outcomes(**expected)
    result.stdout.fnmatch_lines(["*edgeres-no-such-tool*is not on PATH*"])
    if not trt_here:
        result.stdout.fnmatch_lines(["*needs_trt: *"])
