"""One way to run an analysis: a list of stages, each a function of the run's state, run in
order with the time each took (issue 26, item 3). The transaction report's stages are
:data:`clvmodels.pipeline.STAGES`, the subscription report's
:data:`clvmodels.subscriptions.SUBSCRIPTION_STAGES`; a new section of a report is one stage in
its list, and both reports time their stages the same way (``timings``: stage -> seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Clock", "run_stages"]


class Clock:
    """The time of each stage: :meth:`lap` records the seconds since the previous lap under a
    label (a stage may lap more than once, or not at all when it did nothing)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._last
        self._last = now


def run_stages(run: Any, stages: Sequence[Callable[[Any], None]]) -> Any:
    """Run each stage on ``run`` in order (each reads what earlier ones left on it and adds its
    own results); returns ``run``."""
    for stage in stages:
        stage(run)
    return run
