"""The camera loop in bounded memory: latency statistics of a fixed size (within 0.25 % of the exact ones) and
glibc's malloc arenas capped."""

from __future__ import annotations

import numpy as np
import pytest

from edgeres.bench import latency_stats
from edgeres.camera.latency import LatencyRecorder


def test_latency_recorder_matches_the_exact_statistics():
    rng = np.random.default_rng(0)
    seconds = rng.lognormal(mean=np.log(0.02), sigma=0.6, size=20_000)  # ~20 ms with a long tail
    first, second = LatencyRecorder(), LatencyRecorder()
    for v in seconds[:7_000]:
        first.add(v)
    for v in seconds[7_000:]:
        second.add(v)
    size = first.counts.nbytes
    merged = LatencyRecorder().merge(first).merge(second)
    assert first.counts.nbytes == size and len(merged) == 20_000  # the same size however many were added
    got, exact = merged.stats(), latency_stats(list(seconds))
    for key in ("mean", "std", "min", "max"):
        assert got[key] == pytest.approx(exact[key], rel=1e-6)
    for key in ("p50", "p90", "p99"):
        assert got[key] == pytest.approx(exact[key], rel=3e-3)


def test_latency_recorder_edges():
    recorder = LatencyRecorder()
    with pytest.raises(ValueError, match="no durations"):
        recorder.percentile(50)
    for v in (0.0, 5e-7, 2e3):  # below the first bucket and past the last: kept within the exact min and max
        recorder.add(v)
    stats = recorder.stats()
    # under 1 microsecond is reported as 1 microsecond (the first bucket)
    assert stats["min"] == 0.0 and stats["max"] == 2e6 and stats["p50"] == pytest.approx(1e-3)
    one = LatencyRecorder()
    one.add(0.0123)
    assert one.stats()["p50"] == one.stats()["p99"] == pytest.approx(12.3)


def test_malloc_arenas_capped_unless_the_user_chose():
    import os
    import platform
    import subprocess
    import sys

    code = "from edgeres.camera.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert capped.stdout.strip() == str(expected), capped.stderr
    chosen = subprocess.run(
        [sys.executable, "-c", code], env={**env, "MALLOC_ARENA_MAX": "4"}, capture_output=True, text=True, timeout=60
    )
    assert chosen.stdout.strip() == "False", chosen.stderr
