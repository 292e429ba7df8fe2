"""Alert policies on operators' own events (config log_patterns: Custom.<name>), which the
server cannot list since an agent's rules live in the agent's config."""

from __future__ import annotations

import pytest

from collectors.kernel_patterns import CUSTOM
from diag.alerting.policy import PolicyError
from diag.model import Batch, Signal
from tests.alerting.alerting_helpers import T0, policy, states, subscribe


def _custom(ts: float, rule: str, level: str = "CRITICAL") -> Batch:
    """A batch as an agent pushes it: a user rule's match is a `custom` signal whose type travels in its labels."""
    return Batch(ts=ts, signals=[Signal(ts, CUSTOM, f"nfs: server filer{rule} not responding",
                                        {"type": f"Custom.{rule}", "rule": rule, "source": "/var/log/syslog",
                                         "level": level})])


def test_a_policy_on_a_custom_event_fires_when_the_event_is_recorded(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url, "format": "alibaba"}])
    pid = policy(svc, conditions=[], event_conditions=[{"type": "Custom.NfsTimeout"}], contact_groups=[group])
    family = policy(svc, name="any custom", targets={"instances": ["*"]}, conditions=[],
                    event_conditions=[{"type": "Custom.*", "level": "WARN"}])
    svc.alerting.evaluate(now=T0 + 1)
    assert states(svc, pid) == {}

    svc.events.record_batch("web1", _custom(T0 + 2, "DiskQuota"))  # another rule: not this policy's
    svc.alerting.evaluate(now=T0 + 5)
    assert states(svc, pid) == {}

    svc.events.record_batch("web1", _custom(T0 + 6, "NfsTimeout"))
    svc.alerting.evaluate(now=T0 + 10)
    assert states(svc, pid) == {("web1", "event_conditions[0]"): "firing"}
    assert states(svc, family) == {}  # both were CRITICAL, the family asks for WARN
    svc.alerting.deliver()
    assert len(receiver.bodies) == 1
    assert receiver.bodies[0]["name"] == "Instance:Custom.NfsTimeout:Executed"
    assert receiver.bodies[0]["resourceId"] == "web1"

    svc.events.record_batch("db1", _custom(T0 + 11, "Anything", level="WARN"))
    svc.alerting.evaluate(now=T0 + 15)
    assert states(svc, family) == {("db1", "event_conditions[0]"): "firing"}


@pytest.mark.parametrize("etype", ["Custom.", "Custom.nfsTimeout", "Custom.Nfs-Timeout", "Custom.Nfs.Timeout",
                                   "Custom." + "A" * 65, "Custom.Nfs*"])
def test_a_custom_type_follows_the_log_patterns_name_rule(svc, etype):
    with pytest.raises(PolicyError) as e:
        policy(svc, conditions=[], event_conditions=[{"type": etype}])
    assert e.value.field == "event_conditions[0].type"
    assert "Custom.<rule name>" in e.value.message


def test_other_unknown_types_are_still_refused(svc):
    with pytest.raises(PolicyError) as e:
        policy(svc, conditions=[], event_conditions=[{"type": "Kernel.NoSuchThing"}])
    assert e.value.field == "event_conditions[0].type" and "unknown event type" in e.value.message
