"""The evaluator on constructed data with a controllable clock (`now=`), over the real
embedded store and database."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tests.alerting.alerting_helpers import T0, policy, put, states, subscribe

KEY = ("web1", "conditions[0]")


def test_fires_on_exactly_the_nth_period(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group])
    put(svc, "web1", "cpu_usage", T0, [95, 95, 95, 95])
    seen = []
    for k in range(1, 5):
        # just after period k closed; the open period k+1 already has a breaching point
        put(svc, "web1", "cpu_usage", T0 + k * 60, [99], per_period=1)
        svc.alerting.evaluate(now=T0 + k * 60 + 5)
        seen.append(states(svc, pid).get(KEY, "ok"))
    assert seen == ["pending", "pending", "firing", "firing"]
    svc.alerting.deliver()
    assert len(receiver.bodies) == 1  # one notification, not one per cycle
    msg = receiver.bodies[0]["message"]
    assert "web1" in msg and "cpu_usage" in msg and "avg" in msg and ">= 90" in msg and "/instances/web1" in msg


def test_re_notifies_only_after_the_silence_and_sends_recovery(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group], silence="5m",
                 conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90,
                              "consecutive": 1}])
    put(svc, "web1", "cpu_usage", T0, [95] * 12 + [10])
    for k in range(1, 14):
        svc.alerting.evaluate(now=T0 + k * 60 + 1)
        svc.alerting.deliver()
    kinds = [b["kind"] for b in receiver.bodies]
    # firing at 1m; repeats at 6m and 11m (silence 5m); resolved after the 13th period
    assert kinds == ["firing", "repeat", "repeat", "resolved"]
    assert states(svc, pid)[KEY] == "resolved"
    assert receiver.bodies[-1]["status"] == "resolved"


def test_no_recovery_notice_when_turned_off(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    policy(svc, contact_groups=[group], notify_recovery=False,
           conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    put(svc, "web1", "cpu_usage", T0, [95, 10])
    for k in (1, 2):
        svc.alerting.evaluate(now=T0 + k * 60 + 1)
    svc.alerting.deliver()
    assert [b["kind"] for b in receiver.bodies] == ["firing"]


def test_effective_window_in_its_time_zone(svc):
    # 09:00-18:00 Shanghai on weekdays: 2023-11-14 (a Tuesday) 02:00 UTC is 10:00 there.
    day = datetime(2023, 11, 14, 2, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    pid = policy(svc, effective={"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00",
                                 "timezone": "Asia/Shanghai"},
                 conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    put(svc, "web1", "cpu_usage", day - 3600 * 9, [95] * 60, period=60)  # 17:00-18:00 UTC the day before
    # 17:30 UTC = 01:30 Shanghai: outside the window, nothing is evaluated
    svc.alerting.evaluate(now=day - 3600 * 9 + 1801)
    assert states(svc, pid) == {}
    put(svc, "web1", "cpu_usage", day - 120, [95, 95])
    svc.alerting.evaluate(now=day + 1)  # 10:00 Shanghai, Tuesday: inside
    assert states(svc, pid)[KEY] == "firing"


def test_missing_data_modes_end_to_end(svc):
    pids = {m: policy(svc, name=m, missing_data=m) for m in ("insufficient", "ok", "breaching", "keep")}
    # fine, breaching, breaching, then nothing at all
    put(svc, "web1", "cpu_usage", T0, [50, 95, 95])
    svc.alerting.evaluate(now=T0 + 3 * 60 + 1)
    assert {m: states(svc, p).get(KEY, "ok") for m, p in pids.items()} == {
        "insufficient": "pending", "ok": "pending", "breaching": "pending", "keep": "pending"}
    svc.alerting.evaluate(now=T0 + 4 * 60 + 1)  # the fourth period is missing
    assert {m: states(svc, p).get(KEY, "ok") for m, p in pids.items()} == {
        "insufficient": "pending", "ok": "ok", "breaching": "firing", "keep": "pending"}


def test_all_versus_any(svc):
    conds = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90},
             {"metric": "mem_usage", "period": "1m", "comparison": ">", "threshold": 90}]
    any_id = policy(svc, name="any", conditions=conds)
    all_id = policy(svc, name="all", match="all", conditions=conds)
    put(svc, "web1", "cpu_usage", T0, [95, 95])
    put(svc, "web1", "mem_usage", T0, [50, 95])
    svc.alerting.evaluate(now=T0 + 61)
    assert states(svc, any_id) == {("web1", "conditions[0]"): "firing"}
    assert states(svc, all_id) == {}
    svc.alerting.evaluate(now=T0 + 121)
    assert states(svc, any_id) == {("web1", "conditions[0]"): "firing", ("web1", "conditions[1]"): "firing"}
    assert states(svc, all_id) == {("web1", "all"): "firing"}


def test_targets_by_label_and_multi_series_worst(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, targets={"labels": {"role": "db"}}, contact_groups=[group],
                 conditions=[{"metric": "fs_usage", "period": "1m", "comparison": ">=", "threshold": 90}])
    fs = {"device": "vda", "fstype": "ext4"}
    put(svc, "db1", "fs_usage", T0, [50], labels={"mountpoint": "/", **fs})
    put(svc, "db1", "fs_usage", T0, [97], labels={"mountpoint": "/data", **fs})
    put(svc, "web1", "fs_usage", T0, [99], labels={"mountpoint": "/", **fs})
    svc.alerting.evaluate(now=T0 + 61)
    assert states(svc, pid) == {("db1", "conditions[0]"): "firing"}  # web1 is not a target
    svc.alerting.deliver()
    (body,) = receiver.bodies
    assert "mountpoint=/data avg over 1m" in body["message"] and "97 %" in body["message"]


def test_silence_mutes_then_expires(svc, receiver):
    import time

    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group],
                 conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    now = time.time()
    start = now // 60 * 60 - 600
    s = svc.alerting.repo.add_silence(alert_id=None, policy_id=None, instance_id="web1", duration=300,
                                      comment="nightly backup", now=now - 200)
    assert [x["silence_id"] for x in svc.alerting.repo.silences(now)] == [s["silence_id"]]
    put(svc, "web1", "cpu_usage", start, [95] * 14)
    svc.alerting.evaluate(now=now)
    svc.alerting.deliver()
    assert states(svc, pid)[KEY] == "firing"  # state changes while muted ...
    assert receiver.bodies == []  # ... but nobody is told
    assert any("muted by" in h["detail"] for h in svc.alerting.repo.history())
    later = now + 101  # the silence ended at now + 100
    assert svc.alerting.repo.silences(later) == []
    svc.alerting.evaluate(now=later)
    svc.alerting.deliver(now=later)
    assert [b["kind"] for b in receiver.bodies] == ["firing"]


def test_maintaining_instance_is_held(svc):
    import time

    pid = policy(svc, conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90}])
    now = time.time()
    svc.events.schedule("web1", "SystemMaintenance.Reboot", now - 30, 600, now=now - 30)
    put(svc, "web1", "cpu_usage", now // 60 * 60 - 120, [95, 95])
    svc.alerting.evaluate(now=now)
    assert states(svc, pid) == {}
    svc.alerting.evaluate(now=now + 700)  # maintenance over (no data now either: insufficient)
    put(svc, "web1", "cpu_usage", (now + 700) // 60 * 60 - 60, [95])
    svc.alerting.evaluate(now=now + 700)
    assert states(svc, pid)[KEY] == "firing"


def test_event_condition_fires_on_new_events_only(svc, receiver):
    group = subscribe(svc, [{"type": "webhook", "url": receiver.url, "format": "alibaba"}])
    old = svc.events.detected("web1", "Kernel.HungTask", T0, "old hang")  # before the policy: not new
    svc.alerting.evaluate(now=T0 + 1)
    pid = policy(svc, conditions=[], event_conditions=[{"type": "Kernel.*", "level": "CRITICAL"}],
                 contact_groups=[group])
    svc.alerting.evaluate(now=T0 + 2)
    assert states(svc, pid) == {}
    assert old["type"] == "Kernel.HungTask"
    svc.events.detected("web1", "Kernel.RCUStall", T0 + 3, "stall")  # WARN: does not match
    e = svc.events.detected("web1", "Kernel.SoftLockup", T0 + 3, "soft lockup on CPU#1")
    svc.alerting.evaluate(now=T0 + 10)
    assert states(svc, pid) == {("web1", "event_conditions[0]"): "firing"}
    svc.alerting.deliver()
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["name"] == "Instance:Kernel.SoftLockup:Executed" and body["id"] == e["event_id"]
    assert body["level"] == "CRITICAL" and body["resourceId"] == "web1"
    svc.alerting.evaluate(now=T0 + 10 + 15 * 60)  # quiet for the hold time: resolved, no notice
    assert states(svc, pid) == {("web1", "event_conditions[0]"): "resolved"}
    svc.alerting.deliver()
    assert len(receiver.bodies) == 1


def test_an_acknowledged_alert_repeats_no_more_until_it_resolves_or_the_ack_expires(svc, receiver):
    from diag.alerting.policy import PolicyError

    group = subscribe(svc, [{"type": "webhook", "url": receiver.url}])
    pid = policy(svc, contact_groups=[group], silence="5m",
                 conditions=[{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90,
                              "consecutive": 1}])
    put(svc, "web1", "cpu_usage", T0, [95] * 20 + [10] + [95] * 8)

    def run(periods) -> None:
        for k in periods:
            svc.alerting.evaluate(now=T0 + k * 60 + 1)
            svc.alerting.deliver()

    run(range(1, 3))  # firing at 1m
    [alert] = svc.alerting.repo.alerts(["firing"], pid)
    acked = svc.alerting.ack(alert["alert_id"], "admin-token:ab12cd34", "on it, disk swap", 600, now=T0 + 2 * 60 + 30)
    assert acked["detail"]["ack"]["by"] == "admin-token:ab12cd34" and acked["detail"]["ack"]["comment"] == "on it, disk swap"
    run(range(3, 13))  # without the ack: repeats at 6m and 11m; acknowledged until 12m30s: none
    assert [b["kind"] for b in receiver.bodies] == ["firing"]
    run(range(13, 21))  # the ack expired at 12m30s: repeats again, at 13m and 18m
    assert [b["kind"] for b in receiver.bodies] == ["firing", "repeat", "repeat"]
    run(range(21, 24))  # resolved at 21m, firing again at 22m: a new episode, not acknowledged
    assert [b["kind"] for b in receiver.bodies] == ["firing", "repeat", "repeat", "resolved", "firing"]
    assert "ack" not in svc.alerting.repo.alert(alert["alert_id"])["detail"]
    history = [h for h in svc.alerting.repo.history(T0, None, 100) if h.get("kind") == "ack"]
    assert len(history) == 1 and "on it, disk swap" in history[0]["detail"]
    try:
        svc.alerting.ack("a-nope", "local")
        raise AssertionError("an unknown alert was acknowledged")
    except PolicyError as e:
        assert e.status == 404
