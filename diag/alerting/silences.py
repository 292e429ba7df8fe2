"""A silence of one alert, policy or instance, as the API (POST /api/v1/silences) and the
Alerts page's firing rows both make it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diag.alerting.repository import Repository
    from diag.instances import Instances

TARGETS = ("alert_id", "policy_id", "instance_id")


def target_exists(repo: Repository, instances: Instances, scope: str, target: str) -> bool:
    """Whether the alert, policy or instance (`scope`, one of TARGETS) is there to silence."""
    if scope == "alert_id":
        return repo.alert(target) is not None
    if scope == "policy_id":
        return repo.exists("policy", target)
    return instances.get(target) is not None


def silence_target(repo: Repository, scope: str, target: str, duration: float, comment: str, created_by: str,
                   now: float) -> dict[str, Any]:
    """Silence the one alert, policy or instance from now for `duration` seconds."""
    return repo.add_silence(duration=duration, comment=comment, now=now, created_by=created_by,
                            **{k: (target if k == scope else None) for k in TARGETS})
