"""Latency statistics that stay the same size however long the loop runs.

A camera loop runs for days: keeping every frame's stage times for the final percentiles grew the process by
about 32 bytes per stage per frame (6 stages, 4 streams at 10 frames/s: 26 MiB an hour; see the soak in
docs/benchmarks.md). Here each stage keeps a histogram with logarithmic buckets 0.5 % wide from 1 microsecond to
1000 seconds (33 KiB) plus exact count, mean, standard deviation, min and max. Percentiles come from the buckets,
within 0.25 % of the exact value (the bucket's geometric middle, kept within the exact min and max).
"""

from __future__ import annotations

import math

import numpy as np

_LOW = 1e-6  # seconds: everything shorter lands in the first bucket
_HIGH = 1e3
_GROWTH = 1.005  # each bucket 0.5 % wider than the one before
_LOG_GROWTH = math.log(_GROWTH)
_BUCKETS = math.ceil(math.log(_HIGH / _LOW) / _LOG_GROWTH) + 1


class LatencyRecorder:
    """Durations (seconds) of one stage, summarized like ``edgeres.bench.latency_stats`` in bounded memory."""

    __slots__ = ("count", "counts", "high", "low", "total", "total_sq")

    def __init__(self) -> None:
        self.counts = np.zeros(_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, seconds: float) -> None:
        v = float(seconds)
        index = 0 if v <= _LOW else min(_BUCKETS - 1, int(math.log(v / _LOW) / _LOG_GROWTH))
        self.counts[index] += 1
        self.count += 1
        self.total += v
        self.total_sq += v * v
        self.low = min(self.low, v)
        self.high = max(self.high, v)

    def __len__(self) -> int:
        return self.count

    def merge(self, other: LatencyRecorder) -> LatencyRecorder:
        """Add another recorder's durations to this one (all streams' together); returns self."""
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        return self

    def percentile(self, q: float) -> float:
        """The q-th percentile in seconds (the sample at rank q/100 * (count - 1), as numpy's 'lower')."""
        if self.count == 0:
            raise ValueError("no durations recorded")
        rank = math.floor(q / 100.0 * (self.count - 1))
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        middle = _LOW * _GROWTH ** (index + 0.5) if index > 0 else _LOW
        return min(max(middle, self.low), self.high)

    def stats(self) -> dict:
        """p50/p90/p99/mean/std/min/max in milliseconds (the keys of ``edgeres.bench.latency_stats``)."""
        mean = self.total / self.count
        var = max(0.0, self.total_sq / self.count - mean * mean)
        return {
            "p50": 1e3 * self.percentile(50),
            "p90": 1e3 * self.percentile(90),
            "p99": 1e3 * self.percentile(99),
            "mean": 1e3 * mean,
            "std": 1e3 * math.sqrt(var),
            "min": 1e3 * self.low,
            "max": 1e3 * self.high,
        }
