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


def interleaved_median_times(fns: dict[str, Callable[[], Any]], repeats: int,
                             warm_ups: Optional[dict[str, Callable[[], Any]]] = None) -> dict[str, float]:
    """Median wall time (s) of each ``fns[name]()`` over ``repeats`` rounds, the functions timed in
    turn within every round (after one untimed warm-up each, ``warm_ups[name]`` if given). A
    machine whose speed drifts (a shared 2-core VM drifts 10-30% between minutes) then slows
    every function alike, so their ratios hold where back-to-back medians would not."""
    warm_ups = warm_ups or {}
    for name, fn in fns.items():
        warm_ups.get(name, fn)()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}
