"""The one-click defaults (Alibaba 一键报警): created once, on first start, then the user's
to edit or delete. Metrics and thresholds come from the check catalogue, so an alert and
a diagnosis report speak the same numbers; a threshold that is not there fails loudly."""

from __future__ import annotations

from typing import Any

KEY = "alerting:defaults_created"


def _threshold(check_id: str, key: str) -> float:
    from checks import catalogue

    th = catalogue.get(check_id).thresholds
    if key not in th:
        raise RuntimeError(f"check {check_id} has no threshold {key!r}, which the default alert policies read")
    return float(th[key])


def policies(interval: float) -> dict[str, dict[str, Any]]:
    """Default policy bodies by id. Periods are never shorter than the collection interval."""
    from checks import state

    def usage(metric: str, check_id: str) -> dict[str, Any]:
        return {"metric": metric, "statistic": "avg", "comparison": ">=",
                "period": max(interval, _threshold(check_id, "window_seconds")),
                "threshold": _threshold(check_id, "percent"), "consecutive": 3, "severity": "warning"}

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
             "threshold": _threshold("storage.disk_usage", "warning"), "severity": "warning"},
            {"metric": "fs_usage", "statistic": "avg", "period": disk, "comparison": ">=", "consecutive": 1,
             "threshold": _threshold("storage.disk_usage", "critical"), "severity": "critical"}],
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
    for pid, body in policies(alerting.service.config.interval).items():
        if not alerting.repo.exists("policy", pid):
            alerting.save_policy(body, pid, source="default")
            made.append(pid)
    alerting.db.set_kv(KEY, True)
    return made
