"""How the scheduled jobs ran: outcomes and wall times by task, for /metrics."""

from __future__ import annotations

from collections import Counter

from prometheus_client import Histogram

# A collection takes milliseconds, a diagnosis of many instances seconds; past 60 s a
# job overruns any interval the service would be set to.
JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)


class JobStats:
    """Filled by the scheduler's listener and job wrapper; `durations` is registered by the web app."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        # `task`, not `job`: a scrape's own `job` label would clash with it.
        self.durations = Histogram("diag_job_duration_seconds", "Wall time of scheduled job runs, by task.",
                                   ["task"], registry=None, buckets=JOB_BUCKETS)
