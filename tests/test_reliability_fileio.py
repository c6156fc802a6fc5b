"""edgeres.fileio on its own, cheaply: the output lock between real processes, the sweep of what a killed writer
left, the errno found in libraries' own messages, and a real file size limit turned into one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest
from helpers import subprocess_env

from edgeres.errors import EdgeresError
from edgeres.fileio import (
    _errno_in_text,
    atomic_path,
    output_lock,
    remove_stale_temps,
    write_failure,
    write_json_atomic,
)


def hold_lock(target, shared: bool = False) -> subprocess.Popen:
    """Another process holding ``target``'s lock until killed."""
    code = (
        "import time\nfrom edgeres.fileio import output_lock\n"
        f"with output_lock({str(target)!r}, '--out', shared={shared}):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_refuses_a_second_writer_and_is_gone_afterwards(tmp_path):
    target = tmp_path / "engines" / "e"
    holder = hold_lock(target)
    try:
        with (
            pytest.raises(EdgeresError, match=rf"in use by another edgeres process \(pid {holder.pid}\)"),
            output_lock(target, "--out"),
        ):
            pass
        with (
            pytest.raises(EdgeresError, match="being written by another edgeres process"),
            output_lock(target, "--calib folder", shared=True),
        ):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the kernel releases a dead holder's lock
        holder.wait()
    with output_lock(target, "--out"):
        assert (tmp_path / "engines" / ".e.lock").is_file()
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == []  # lock file removed


def test_readers_share_the_lock(tmp_path):
    target = tmp_path / "calib"
    reader = hold_lock(target, shared=True)
    try:
        with output_lock(target, "--calib folder", shared=True):  # a second reader is fine
            pass
        with pytest.raises(EdgeresError, match="in use by another edgeres process"), output_lock(target, "--out"):
            pass
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()


def test_stale_temps_of_a_killed_writer_are_swept_and_nothing_else(tmp_path):
    target = tmp_path / "digits"
    stale = [tmp_path / ".digits.k3j_x9ab", tmp_path / ".digits.old", tmp_path / ".digits.old-ab_c1234"]
    for p in stale:
        p.mkdir()
        (p / "half.onnx").write_bytes(b"\0" * 10)
    (tmp_path / ".digits.ab12cd34.tmp").write_bytes(b"half")
    keep = [tmp_path / ".digits.x.k3j_x9ab", tmp_path / ".digits2.k3j_x9ab", tmp_path / "digits.onnx"]
    for p in keep:
        p.write_bytes(b"user")
    removed = remove_stale_temps(target)
    assert sorted(p.name for p in removed) == [
        ".digits.ab12cd34.tmp",
        ".digits.k3j_x9ab",
        ".digits.old",
        ".digits.old-ab_c1234",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Error while serializing: I/O error: File too large (os error 27)", errno.EFBIG),
        ("[Errno 28] No space left on device: 'x.onnx'", errno.ENOSPC),
        ("PytorchStreamWriter failed writing file data/0: file write failed", None),
        ("protobuf: Read-only file system", errno.EROFS),
    ],
)
def test_errno_in_library_messages(text, code):
    assert _errno_in_text(text) == code


def test_failure_unrelated_to_the_disk_passes_through(tmp_path):
    assert write_failure(tmp_path, ValueError("shapes do not match"), "x") is None
    assert write_failure(tmp_path, OSError(errno.ENOENT, "No such file or directory"), "x") is None


def test_real_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """RLIMIT_FSIZE in a child process: the write fails half-way with EFBIG; the error names the limit."""
    code = (
        "import resource, sys\nresource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        "from edgeres.fileio import atomic_path\nfrom edgeres.errors import EdgeresError\n"
        "try:\n"
        f"    with atomic_path({str(tmp_path / 'new' / 'big.bin')!r}) as tmp:\n"
        "        tmp.write_bytes(bytes(4 << 20))\n"
        "except EdgeresError as exc:\n    print(exc); sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env())
    assert proc.returncode == 1, proc.stderr
    assert "file size limit of this process (1.0 MB, 'ulimit -f')" in proc.stdout, proc.stdout
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary file, not even the new folder


def test_atomic_write_keeps_the_old_file_when_the_block_fails(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("{half")
        raise RuntimeError("killed half-way")
    assert path.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
