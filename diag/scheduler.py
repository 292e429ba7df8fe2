"""The service's clock: APScheduler jobs for collection and store upkeep."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from diag.service import Service

log = logging.getLogger(__name__)

_OUTCOME = {EVENT_JOB_EXECUTED: "ok", EVENT_JOB_ERROR: "error", EVENT_JOB_MISSED: "missed"}


def build(service: Service) -> BackgroundScheduler:
    cfg = service.config
    sched = BackgroundScheduler(
        timezone=timezone.utc,
        # A cycle that overruns is not stacked on the next one; a late one runs once.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(cfg.interval))},
    )
    now = datetime.now(timezone.utc)
    sched.add_job(service.collect, IntervalTrigger(seconds=cfg.interval), id="collect", next_run_time=now)
    sched.add_job(service.maintain, IntervalTrigger(seconds=cfg.store.maintain_every), id="maintain")

    def _count(event: JobEvent) -> None:
        outcome = _OUTCOME[event.code]
        service.job_outcomes[(event.job_id, outcome)] += 1
        if outcome == "error":
            service.last_error = f"{event.job_id}: {event.exception!r}"
            log.error("job %s failed: %r", event.job_id, event.exception)

    sched.add_listener(_count, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return sched
