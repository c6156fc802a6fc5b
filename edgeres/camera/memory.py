"""Keeping a long camera run's resident memory flat: fewer glibc malloc arenas.

glibc gives threads that allocate at the same time arenas of their own, up to 8 per core. The camera loop
has a capture thread per stream, the inference thread, ONNX Runtime's pool and the result thread, and a frame
(900 KB at 640x480) is allocated in one thread and freed in another, so every arena keeps pages that only its
threads reuse. The 30-minute soak grew by 10 % that way (docs/benchmarks.md); with two arenas the process
starts about 50 MiB smaller and stays flat between stream reconnects. A user's own ``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas for the threads started from now on (call before the loop's threads start).

    Returns:
        True when the cap was set; False on another C library or platform, or when ``MALLOC_ARENA_MAX`` is set
        (glibc read it at start-up).
    """
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):
        return False
