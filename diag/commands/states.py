"""Record, instance and overall states (API.md "Remote commands", seed 001 "批量执行状态")."""

from __future__ import annotations

from collections.abc import Iterable

PENDING, RUNNING, STOPPING, STOPPED = "Pending", "Running", "Stopping", "Stopped"
FINISHED, FAILED, PARTIAL = "Finished", "Failed", "PartialFailed"
RECORD_STATES = (PENDING, RUNNING, STOPPING, STOPPED, FINISHED, FAILED)
FINAL = (STOPPED, FINISHED, FAILED)


def instance_status(periodic: bool, stopped: bool, records: list[str]) -> str:
    """`records` oldest first. A periodic instance stays Running between runs until stopped
    (seed 001: 除用户自行停止之外... 一直维持为执行中)."""
    if STOPPING in records:
        return STOPPING
    if stopped:
        return records[-1] if records and not periodic else STOPPED
    if periodic:
        return RUNNING
    return records[-1] if records else PENDING


def overall(statuses: Iterable[str]) -> str:
    """The seed's priority rule; Pending counts as Running."""
    s = set(statuses)
    if not s or s & {RUNNING, PENDING}:
        return RUNNING
    if STOPPING in s:
        return STOPPING
    if s == {STOPPED}:
        return STOPPED
    if s <= {FAILED, STOPPED}:
        return FAILED
    if s <= {FINISHED, STOPPED}:
        return FINISHED
    return PARTIAL
