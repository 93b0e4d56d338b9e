"""One thread budget for a whole run (issue 30, item 1): DuckDB's worker threads, BLAS and the
OpenMP threads of scikit-learn's gradient boosting together.

Each library sizes itself to every core of the machine. On a machine other work keeps busy that
is a fight: OpenMP workers spin while they wait for a core, and a report's gradient-boosting
baseline took 29 s instead of 2.6 s on this 2-core machine with two other CPU-bound processes
running (the whole analysis 34.9 s; with one thread 6.4 s, against 5.7-6.0 s quiet). So the
budget is the cores that are free when the run starts: the machine's (those this process may
use) less the load of other processes (the 1-minute load average, less this process's own
core; and the threads runnable right now, which the average lags behind), at least one; or a
number given by the user.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import numpy as np
from threadpoolctl import threadpool_limits

from clvmodels._validation import check_number
from clvmodels.engine import set_engine_threads

__all__ = ["available_cores", "thread_budget", "limited_threads", "within_budget"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _running_now(samples: int = 5, pause: float = 0.02) -> float | None:
    """Runnable threads on the machine now (Linux ``/proc/stat`` ``procs_running``, this one
    included): the median of a few looks 20 ms apart, or None where it cannot be read."""
    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat") as fh:
                seen += [int(line.split()[1]) for line in fh if line.startswith("procs_running")]
        except (OSError, ValueError, IndexError):
            return None
        if i + 1 < samples:
            time.sleep(pause)
    return float(np.median(seen)) if seen else None


def thread_budget(threads: int = 0) -> int:
    """``threads`` when given (at most the cores), else the cores other processes leave free now:
    the cores less the other work - the larger of the 1-minute load average and the runnable
    threads seen now (it lags behind work that just started), each less this process's own -
    rounded, between 1 and the cores."""
    cores = available_cores()
    n = int(check_number("threads", threads, minimum=0, integer=True))
    if n:
        return min(n, cores)
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    now = _running_now()
    if now is not None:
        load.append(now)
    others = max([0.0] + [v - 1.0 for v in load])
    return int(min(cores, max(1, round(cores - others))))


_budget: list[int] = []  # the budget of the run in progress (empty: none)


@contextlib.contextmanager
def limited_threads(threads: int = 0) -> Iterator[int]:
    """Inside the block DuckDB, BLAS and OpenMP use at most :func:`thread_budget` threads (yielded);
    after it they are back to their defaults. A library loaded inside the block (scikit-learn's
    OpenMP runtime is loaded when the baseline first runs) is limited by :func:`within_budget`."""
    n = thread_budget(threads)
    set_engine_threads(n)
    _budget.append(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        _budget.pop()
        set_engine_threads(_budget[-1] if _budget else None)


def within_budget() -> contextlib.AbstractContextManager:
    """The run's thread budget applied to every thread pool loaded now (threadpoolctl limits only
    the libraries already loaded when it is asked): use it around work that loaded one since
    :func:`limited_threads` began. Without a run in progress, nothing is limited."""
    return threadpool_limits(limits=_budget[-1]) if _budget else contextlib.nullcontext()
