"""Atomic writes and the no-overwrite rule, used for every artifact edgeres writes.

Also what makes a failed write one clear line: a full disk, a file size limit (``ulimit -f``), a read-only
or unwritable folder are named as such (with the disk and its free space) instead of surfacing as a
traceback from whichever library was writing; large writes check the free space first; and one lock per
output folder keeps two processes from writing the same artifact at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgeres.errors import EdgeresError


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing file unless ``force`` is set."""
    if Path(path).exists() and not force:
        raise EdgeresError(f"{path} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(path: Path, expect_bytes: int = 0):
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Args:
        path: the artifact's final path.
        expect_bytes: about how much the block writes; checked against the disk's free space first.

    Raises:
        EdgeresError: the disk is full (or would be), a file size limit is reached, or the folder is read-only
            or not writable; nothing is left at ``path`` or beside it.
    """
    path = Path(path).absolute()
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    done = False
    try:
        with writing_into(path.parent, what=str(path)):
            path.parent.mkdir(parents=True, exist_ok=True)
            if expect_bytes:
                ensure_free_space(path.parent, expect_bytes, str(path))
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; artifacts are ordinary readable files
            try:
                yield Path(tmp)
                os.replace(tmp, path)
                done = True
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    finally:
        if not done:
            _remove_empty(made)  # a failed write leaves no empty folder behind either


# errno values that mean "the place, not the program, is the problem"
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY = {errno.EROFS}
_NO_PERMISSION = {errno.EACCES, errno.EPERM}
LOW_SPACE_BYTES = 1 << 20  # a write that failed on a disk with less free than this ran out of space


def disk_of(folder: Path) -> tuple[str, str, str]:
    """(mount point, device, file system type) of the disk holding ``folder`` (its nearest existing parent)."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    p = p.resolve()
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    device, fstype = "?", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1] == str(p):
                device, fstype = fields[0], fields[2]  # the last mount on a point is the one in effect
    return str(p), device, fstype


def _existing(folder: Path) -> Path:
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(_existing(folder)).free


def describe_disk(folder: Path, free: bool = True) -> str:
    """The disk holding ``folder`` in words: "the disk at /mnt/x (tmpfs, tmpfs, 1.2 MB free of 20.0 MB)".

    ``free=False``: only its size (after a failed write is cleaned up, its free space says nothing)."""
    mount, device, fstype = disk_of(folder)
    try:
        usage = shutil.disk_usage(_existing(folder))
        space = f", {_mb(usage.free)} free of {_mb(usage.total)}" if free else f", {_mb(usage.total)}"
    except OSError:
        space = ""
    return f"the disk at {mount} ({device}, {fstype}{space})"


def _mb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Refuse a large write up front when the disk cannot hold it (plus 5 % and 16 MB of slack).

    Raises:
        EdgeresError: naming the disk, what was to be written, and the space needed and free.
    """
    free = free_bytes(folder)
    want = int(needed * 1.05) + (16 << 20)
    if free < want:
        raise EdgeresError(
            f"not enough free space for {what}: it needs about {_mb(want)} and {describe_disk(folder)} has "
            f"{_mb(free)} free; free some space or write to another disk"
        )


def write_failure(folder: Path, exc: BaseException, what: str) -> EdgeresError | None:
    """The user-facing reason a write into ``folder`` failed with ``exc``, or None when the disk is not to blame.

    Libraries report a full disk in their own words (``OSError: [Errno 28]``, protobuf's "failed to write",
    torch's "file write failed"): the errno is used when there is one, and the disk is asked otherwise.
    """
    import resource

    code = exc.errno if isinstance(exc, OSError) else _errno_in_text(str(exc))
    folder = Path(folder)
    if isinstance(exc, OSError) and isinstance(exc.filename, str) and exc.filename:
        folder = Path(exc.filename).parent  # the disk that failed may be another one (a temporary folder)
    try:
        stat = os.statvfs(_existing(folder))
        read_only = bool(stat.f_flag & os.ST_RDONLY)
        low = stat.f_bavail * stat.f_frsize < LOW_SPACE_BYTES
    except OSError:
        read_only = low = False
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if code in _READ_ONLY or (code is None and read_only) or (code in _NO_PERMISSION and read_only):
        return EdgeresError(
            f"cannot write {what}: {describe_disk(folder)} is mounted read-only; choose an --out on a writable disk"
        )
    if code in _NO_SPACE or (code is None and low):
        return EdgeresError(
            f"no space left writing {what}: {describe_disk(folder, free=False)} ran full; free some space or write "
            "to another disk (nothing was left half-written)"
        )
    said_write = "writ" in str(exc).lower()  # "file write failed", "failed to write", "error writing"
    if code == errno.EFBIG or (code is None and limit != resource.RLIM_INFINITY and said_write):
        return EdgeresError(
            f"cannot write {what}: the file size limit of this process ({_mb(limit)}, 'ulimit -f') was reached on "
            f"{describe_disk(folder)}; raise the limit (nothing was left half-written)"
        )
    if code in _NO_PERMISSION and not os.access(_existing(folder), os.W_OK):
        return EdgeresError(f"cannot write {what}: permission denied in {_existing(folder)}; choose another --out")
    return None


def _errno_in_text(message: str) -> int | None:
    """The errno a library put in its own exception's text: Rust's "(os error 27)", C's "[Errno 28]", or the
    system's wording ("No space left on device") for the errnos that name a disk problem."""
    import re

    found = re.search(r"(?:os error|errno)\s*(\d+)", message, re.IGNORECASE)
    if found:
        return int(found.group(1))
    for code in (*_NO_SPACE, *_READ_ONLY, errno.EFBIG):
        if os.strerror(code).lower() in message.lower():
            return code
    return None


@contextlib.contextmanager
def writing_into(folder: Path, what: str):
    """Turn a write that fails because of the disk (full, size limit, read-only, no permission) into one
    EdgeresError naming it; any other failure passes through unchanged."""
    try:
        yield
    except EdgeresError:
        raise
    except Exception as exc:
        found = write_failure(Path(folder), exc, what)
        if found is None:
            raise
        raise found from None


def probe_writable(folder: Path, what: str) -> None:
    """Refuse a read-only, unwritable or full output folder before minutes of work go into it (training notices
    otherwise only when it saves its first checkpoint). Leaves nothing behind.

    Raises:
        EdgeresError: the folder cannot take a file; the message names the disk or the permission.
    """
    folder = Path(folder).absolute()
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        with writing_into(folder, what=f"{what} {folder}"):
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".edgeres-probe.") as probe:
                probe.write(b"0" * 4096)
                probe.flush()
                os.fsync(probe.fileno())
    finally:
        _remove_empty(made)


@contextlib.contextmanager
def output_lock(target: Path, what: str, shared: bool = False):
    """Hold an exclusive lock on ``target`` (an artifact folder or file) for the duration of the block.

    The lock is a file beside the target (``.NAME.lock``; the target itself is replaced by a rename, so it
    cannot carry the lock), removed again when the last holder leaves. A second process writing the same
    target is refused at once, naming the first. ``shared``: a reader's lock instead (many readers at once,
    never while a writer holds it).

    Raises:
        EdgeresError: another process holds the lock.
    """
    import fcntl

    target = Path(target).absolute()
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    lock_file = target.parent / f".{target.name}.lock"
    with writing_into(target.parent, what=str(target)):
        target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                _remove_empty(made)
                doing = "being written" if shared else "in use"
                raise EdgeresError(
                    f"{target} is {doing} by another edgeres process ({holder}); wait for it to finish, or "
                    f"choose another {what}"
                ) from None
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
    try:
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            remove_stale_temps(target)
        yield
    finally:
        try:  # the last holder removes the lock file (a reader only when no other reader holds it)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock_file.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)
        _remove_empty(made)


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove what a killed writer of ``target`` left beside it: the temporary folder (``.NAME.XXXXXXXX``, from
    mkdtemp), temporary files (``.NAME.XXXXXXXX.tmp``, from ``atomic_path``) and the previous version of a
    replaced folder (``.NAME.old``, ``.NAME.old-XXXXXXXX`` from ``replace_folder``). Only called while
    holding ``target``'s exclusive lock, so no live writer owns them.

    Returns:
        What was removed.
    """
    import re

    target = Path(target)
    name = re.escape(target.name)
    stale = re.compile(rf"^\.{name}\.(?:[a-z0-9_]{{8}}|[a-z0-9_]{{8}}\.tmp|old|old-[a-z0-9_]{{8}})$")
    removed = []
    with contextlib.suppress(OSError):
        for p in target.parent.iterdir():
            if not stale.match(p.name):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this process created for nothing (a refused write leaves no empty folder behind)."""
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()


def replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` into place at ``out`` (same file system). An existing ``out`` (already
    allowed by ``--force``) is moved aside first and removed only after the swap; if the swap fails it is put
    back, so the path always holds one complete version."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:  # put the previous version back rather than leave nothing
            os.replace(old / out.name, out)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
