"""Timing helper shared by the benchmark scripts in tools/."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional


def median_time(fn: Callable[[], Any], repeats: int, warm_up: Optional[Callable[[], Any]] = None) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs, after one untimed warm-up run
    (``warm_up()`` if given, else ``fn()``: first-call allocations, renderer start, kernel choice)."""
    (warm_up or fn)()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
