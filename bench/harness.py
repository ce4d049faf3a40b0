"""Timing helpers shared by every benchmark suite."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


class Stages:
    """Counts a suite's measurements for the caller's `(done, total)` progress callback, if any."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0
        if progress is not None:
            progress(0, total)

    def __call__(self) -> None:
        """One measurement finished."""
        self.done = min(self.done + 1, self.total)
        if self.progress is not None:
            self.progress(self.done, self.total)


def sync(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], device: Any = "cpu", repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median and min wall time of `fn` in milliseconds, after warm-up runs."""
    for _ in range(warmup):
        fn()
        sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3), "runs": repeats}


def timeit_alternating(fns: dict[str, Callable[[], Any]], device: Any = "cpu", repeats: int = 5,
                       warmup: int = 1) -> dict[str, dict[str, float]]:
    """`timeit` for several functions at once, taking turns run by run, so a load that
    comes and goes on a shared machine falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: {"median_ms": round(statistics.median(t), 3), "min_ms": round(min(t), 3), "runs": repeats}
            for name, t in times.items()}


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024.0 if sys.platform != "darwin" else kb / 2**20, 1)


def environment(device: Any) -> dict[str, Any]:
    import platform

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "device": str(device), "machine": platform.machine()}
    if str(device).startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(0)
    return env
