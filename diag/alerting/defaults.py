"""The one-click defaults (Alibaba 一键报警): created once, on first start, then the user's
to edit or delete. Metrics and thresholds come from the check catalogue, so an alert and
a diagnosis report speak the same numbers; a threshold that is not there fails loudly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checks.base import Check

KEY = "alerting:defaults_created"


def _threshold(checks: Sequence[Check], check_id: str, key: str) -> float:
    check = next((c for c in checks if c.id == check_id), None)
    if check is None:
        raise RuntimeError(f"no check {check_id}, which the default alert policies read")
    if key not in check.thresholds:
        raise RuntimeError(f"check {check_id} has no threshold {key!r}, which the default alert policies read")
    return float(check.thresholds[key])


def policies(interval: float, checks: Sequence[Check] | None = None) -> dict[str, dict[str, Any]]:
    """Default policy bodies by id. Periods are never shorter than the collection interval.
    `checks` are the configured checks (the service's), so a threshold the config changed is
    the alert's threshold too; the catalogue's defaults when None."""
    from checks import catalogue, state

    checks = catalogue.ALL if checks is None else checks

    def _threshold_of(check_id: str, key: str) -> float:
        return _threshold(checks, check_id, key)

    def usage(metric: str, check_id: str) -> dict[str, Any]:
        return {"metric": metric, "statistic": "avg", "comparison": ">=",
                "period": max(interval, _threshold_of(check_id, "window_seconds")),
                "threshold": _threshold_of(check_id, "percent"), "consecutive": 3, "severity": "warning"}

    disk = max(interval, 300.0)
    return {
        "default-cpu": {"name": "CPU usage", "conditions": [usage("cpu_usage", "performance.cpu")],
                        "description": "performance.cpu: 5-minute average at or above its threshold for 3 periods"},
        "default-memory": {"name": "Memory usage", "conditions": [usage("mem_usage", "performance.memory")],
                           "description": "performance.memory: 5-minute average for 3 periods"},
        "default-bandwidth": {"name": "Bandwidth usage",
                              "conditions": [usage("bandwidth_usage_in", "network.bandwidth"),
                                             usage("bandwidth_usage_out", "network.bandwidth")],
                              "description": "network.bandwidth: in or out against the cap, 5-minute average, 3 periods"},
        "default-disk": {"name": "Disk usage", "conditions": [
            {"metric": "fs_usage", "statistic": "avg", "period": disk, "comparison": ">=", "consecutive": 1,
             "threshold": _threshold_of("storage.disk_usage", "warning"), "severity": "warning"},
            {"metric": "fs_usage", "statistic": "avg", "period": disk, "comparison": ">=", "consecutive": 1,
             "threshold": _threshold_of("storage.disk_usage", "critical"), "severity": "critical"}],
            "description": "storage.disk_usage at its warning and critical levels"},
        "default-kernel-faults": {"name": "Kernel faults", "event_conditions": [{"type": t} for t in state.FAULTS],
                                  "description": "state.kernel_fault: the kernel log reports a hang, lockup or panic"},
        "default-unexpected-reboot": {"name": "Unexpected reboot",
                                      "event_conditions": [{"type": "InstanceFailure.Reboot"}],
                                      "description": "state.reboot: a reboot after a panic, watchdog or unclean stop"},
    }


def create_once(alerting: Any) -> list[str]:
    """Create the defaults unless this database already had them (even if since deleted)."""
    if alerting.db.get_kv(KEY):
        return []
    made = []
    for pid, body in policies(alerting.interval, alerting.checks).items():
        if not alerting.repo.exists("policy", pid):
            alerting.save_policy(body, pid, source="default")
            made.append(pid)
    alerting.db.set_kv(KEY, True)
    return made


# The objects `alerting.notify_webhook` upserts: fixed ids, so a restart updates them in place.
NOTIFY_CONTACT = "notify-webhook"
NOTIFY_GROUP = "notify-webhook"


def notify_webhook(alerting: Any, url: str) -> list[str]:
    """Make the defaults reach someone: a webhook contact for `url` and a group holding it,
    given to each default policy that still has no contact group. A policy the user gave a
    group of their own keeps it. Returns the ids of the policies given the group."""
    alerting.save_contact({"name": "Webhook (alerting.notify_webhook)", "channels": [{"type": "webhook", "url": url}]},
                          NOTIFY_CONTACT)
    alerting.save_group({"name": "alerting.notify_webhook", "contacts": [NOTIFY_CONTACT]}, NOTIFY_GROUP)
    given = []
    for pid in policies(alerting.interval, alerting.checks):
        current = alerting.repo.get("policy", pid)
        if current is not None and not current.get("contact_groups"):
            alerting.patch_policy(pid, {"contact_groups": [NOTIFY_GROUP]})
            given.append(pid)
    return given
