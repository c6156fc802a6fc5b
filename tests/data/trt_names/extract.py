"""Write the names TensorRT's compiled Python bindings export, one ``<version>.txt`` per wheel.

How the committed lists were made (once, with network; CI only reads the text files)::

    pip download --no-deps -d /tmp/trtwheels tensorrt-bindings==8.6.1 tensorrt-cu12-bindings==10.3.0 \
        tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu13-bindings==11.0.0.114 tensorrt-cu13-bindings==11.4.0.106
    python tests/data/trt_names/extract.py /tmp/trtwheels/*.whl

The wheels hold the real pybind11 module ``tensorrt_bindings/tensorrt.so`` but link libnvinfer,
libnvonnxparser and libnvinfer_plugin, which PyPI does not ship. To list what the module defines, this
script compiles throw-away stand-ins for those libraries in a temporary folder: each C function the module
imports from them (``createInferBuilder_INTERNAL`` and a handful more, read with ``nm -D``) becomes a
function that calls ``abort()``. Importing the module only registers its classes, functions and enums; it
calls none of those functions, so nothing of TensorRT runs, and nothing here could produce a TensorRT
result. The child process then walks ``dir()`` of the module and of each class, and the names the
package's ``__init__.py`` defines at top level are read from its source (``ast``, not imported).

Output lines: ``Name`` (a class, function or constant of the module) and ``Class.attr`` (a method,
property or enum member), sorted, after a ``# wheel:`` header line. Each name is also checked to appear in
the module file's bytes, so a list can only hold names that are really there. Needs ``cc``, ``nm`` and
``readelf`` (binutils), and a Python of the wheels' ABI (cp311 here).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).parent
STUB_SONAMES = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin", "libnvparsers")

WALK = r"""
import importlib.util, inspect, json, sys
spec = importlib.util.spec_from_file_location("tensorrt", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
names = set()
for name in dir(mod):
    if name.startswith("__"):
        continue
    names.add(name)
    obj = getattr(mod, name)
    if inspect.isclass(obj):
        for attr in dir(obj):
            if not attr.startswith("__") or attr in ("__enter__", "__exit__"):
                names.add(f"{name}.{attr}")
print(json.dumps(sorted(names)))
"""


def wheel_version(wheel: Path) -> str:
    """'tensorrt_cu12_bindings-10.3.0-cp311-...whl' -> '10.3.0'."""
    return wheel.name.split("-")[1]


def imported_symbols(so: Path) -> dict[str, list[str]]:
    """{TensorRT library soname: [undefined symbols the module takes from it]} read with nm and readelf."""
    needed = re.findall(r"\[(lib[^\]]+)\]", subprocess.run(["readelf", "-d", str(so)], capture_output=True,
                                                            text=True, check=True).stdout)
    trt_libs = [n for n in needed if n.split(".so")[0] in STUB_SONAMES]
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True, text=True,
                               check=True).stdout.split()
    ours = [s for s in undefined if s not in ("U", "w") and "@" not in s and not s.startswith(("Py", "_Py", "_ITM"))
            and s not in ("__gmon_start__", "__pthread_key_create", "dlopen", "dlsym", "dlclose", "dlerror")
            and not s.startswith("_ZGT")]
    # Every such symbol goes into the first library; the loader resolves by name, not by library.
    return {lib: (ours if i == 0 else []) for i, lib in enumerate(trt_libs)}


def build_stubs(symbols: dict[str, list[str]], folder: Path) -> None:
    for lib, names in symbols.items():
        src = folder / f"{lib}.c"
        src.write_text("#include <stdlib.h>\n" + "".join(f"void {n}(void) {{ abort(); }}\n" for n in names))
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{lib}", "-o", str(folder / lib), str(src)],
                       check=True)


def init_names(init_py: str) -> set[str]:
    """Top-level functions, classes and assigned names of the package's ``__init__.py``."""
    out = set()
    for node in ast.parse(init_py).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {n for n in out if not n.startswith("_") or n == "__version__"}


def extract(wheel: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp / "wheel")
        so = tmp / "wheel" / "tensorrt_bindings" / "tensorrt.so"
        build_stubs(imported_symbols(so), tmp)
        env = {**os.environ, "LD_LIBRARY_PATH": str(tmp)}
        proc = subprocess.run([sys.executable, "-c", WALK, str(so)], env=env, capture_output=True, text=True,
                              check=True)
        names = set(json.loads(proc.stdout))
        blob = so.read_bytes()
        missing = [n for n in names if n.rsplit(".", 1)[-1].encode() not in blob]
        if missing:
            raise SystemExit(f"{wheel.name}: names not in the module file: {missing[:10]}")
        init = (tmp / "wheel" / "tensorrt_bindings" / "__init__.py").read_text()
        names |= init_names(init)
    return sorted(names)


def main(wheels: list[str]) -> None:
    for w in map(Path, wheels):
        names = extract(w)
        out = HERE / f"{wheel_version(w)}.txt"
        out.write_text(f"# wheel: {w.name}\n" + "\n".join(names) + "\n")
        print(f"{out}: {len(names)} names")


if __name__ == "__main__":
    main(sys.argv[1:])
