"""The timing loop shared by the benchmark scripts: untimed warm-up calls, then timed repeats.

Imported by the scripts in this folder (run as ``python benchmarks/<script>.py``, which puts
benchmarks/ on sys.path). The callable must finish its work before it returns (fetch a result to
the host), or the clock stops before the device does.
"""

from __future__ import annotations

import statistics
import time


def time_repeats(fn, repeats: int = 3, warmup: int = 1) -> dict:
    """Call ``fn()`` ``warmup`` times untimed (tracing, allocation), then ``repeats`` times timed.

    Returns {"median", "min", "max": seconds of one call, "seconds": every timed call}.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
            "seconds": seconds}


def rates(timing: dict, work: float) -> dict:
    """``work`` per second of each timed call of a `time_repeats` result: median, min, max."""
    per_second = [work / s for s in timing["seconds"]]
    return {"median": statistics.median(per_second), "min": min(per_second), "max": max(per_second)}
