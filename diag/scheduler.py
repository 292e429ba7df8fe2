"""The service's clock: APScheduler jobs for collection and store upkeep."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any
from datetime import datetime, timedelta, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from diag.service import Service

log = logging.getLogger(__name__)

# "skipped": the run was due while the previous one still ran (max_instances), the mark
# of an overrunning job that APScheduler otherwise only logs.
_OUTCOME = {EVENT_JOB_EXECUTED: "ok", EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed",
            EVENT_JOB_MAX_INSTANCES: "skipped"}


def build(service: Service) -> BackgroundScheduler:
    """The jobs of the service's parts, each at its configured interval."""
    p = service.parts
    cfg = p.config
    sched = BackgroundScheduler(
        timezone=timezone.utc,
        # A cycle that overruns is not stacked on the next one; a late one runs once.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(cfg.interval))},
    )
    now = datetime.now(timezone.utc)
    sched.add_job(p.collection.collect, IntervalTrigger(seconds=cfg.interval), id="collect", next_run_time=now)
    sched.add_job(p.upkeep.maintain, IntervalTrigger(seconds=cfg.store.maintain_every), id="maintain")
    sched.add_job(p.events.tick, IntervalTrigger(seconds=cfg.interval), id="events")
    sched.add_job(p.facts.take, IntervalTrigger(seconds=cfg.facts_every), id="facts", next_run_time=now)
    # The first diagnosis waits for two collections, so rates exist; until then: Initializing.
    first = now + timedelta(seconds=2 * cfg.interval + 2)
    sched.add_job(p.diagnoser.diagnose_all, IntervalTrigger(seconds=cfg.diagnose_every), id="diagnose",
                  next_run_time=first)
    # Alerting: evaluate every interval, deliver the outbox every few seconds.
    sched.add_job(p.alerting.evaluate, IntervalTrigger(seconds=cfg.interval), id="alerts",
                  next_run_time=now + timedelta(seconds=1))
    sched.add_job(p.alerting.deliver, IntervalTrigger(seconds=cfg.alerting.deliver_every), id="deliver",
                  next_run_time=now)
    sched.add_job(p.alerting.expire, IntervalTrigger(seconds=cfg.alerting.expire_every), id="alerts_expire")
    if p.commands is not None:  # remote commands: schedules, delivery timeouts
        sched.add_job(p.commands.tick, IntervalTrigger(seconds=cfg.commands.tick_every), id="commands",
                      next_run_time=now)
    p.plugins.schedule(sched)  # plugin checks: their own intervals, in their own pool
    jobs = p.jobs

    def _count(event: JobEvent) -> None:
        outcome = _OUTCOME[event.code]
        jobs.outcomes[(event.job_id, outcome)] += 1
        if outcome == "error":
            log.error("job %s failed: %r", event.job_id, event.exception)

    sched.add_listener(_count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    # Durations are measured around the call itself: the listener's events carry only the
    # scheduled time, which would add the scheduler's own lateness to every run.
    for job in sched.get_jobs():
        job.modify(func=_timed(job.func, jobs.durations.labels(job.id)))
    return sched


def _timed(fn: Callable[..., Any], hist: Any) -> Callable[..., Any]:
    """`fn`, observing its wall time (failed runs too) into the histogram child `hist`."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            hist.observe(time.perf_counter() - t0)

    return run
