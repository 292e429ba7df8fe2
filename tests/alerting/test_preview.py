"""The event an event-only policy's test plays (diag/alerting/preview.event_sample)."""

from __future__ import annotations

from diag.alerting.policy import Policy
from diag.alerting.preview import event_sample
from diag.events import TYPES


def _sample(*conditions: dict) -> dict | None:
    return event_sample(Policy.model_validate({"name": "p", "event_conditions": list(conditions)}), "i-1")


def test_a_type_is_played_at_its_own_level_unless_the_condition_names_one():
    assert _sample({"type": "Kernel.OOMKill"})["level"] == TYPES["Kernel.OOMKill"][0]
    got = _sample({"type": "Kernel.OOMKill", "level": "INFO"})
    assert (got["type"], got["level"], got["instance_id"]) == ("Kernel.OOMKill", "INFO", "i-1")


def test_a_family_or_a_level_plays_a_type_it_takes():
    assert _sample({"type": "Disk.*"})["type"].startswith("Disk.")
    warn = _sample({"level": "WARN"})
    assert warn["level"] == "WARN" and TYPES[warn["type"]][0] == "WARN"  # a type raised at WARN, not a reboot


def test_custom_log_rules_alone_have_nothing_known_to_play():
    assert _sample({"type": "Custom.*"}) is None
    assert _sample({"type": "Custom.*"}, {"type": "Disk.*"})["type"].startswith("Disk.")
