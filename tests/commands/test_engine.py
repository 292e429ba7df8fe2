"""The engine with a controllable clock: rate and cron fire on time, periodic invocations stay
Running, stop works, and tasks no agent collected fail with AgentNotOnline."""

from datetime import datetime, timezone

import pytest

from diag.commands import delivery
from diag.commands.engine import Commands, Settings
from diag.commands.model import CommandError
from diag.db import Database
from diag.events import EventLog

LOCAL, REMOTE = "i-local", "i-remote"
T0 = datetime(2026, 3, 2, 0, 0, 30, tzinfo=timezone.utc).timestamp()  # a Monday


@pytest.fixture
def engine(tmp_path):
    db = Database(tmp_path / "diag.db")
    e = Commands(db, EventLog(db), Settings(local_id=LOCAL, delivery_timeout=60), local_boot_id="boot-1")
    yield e
    e.close()
    db.close()


def command(content="echo ok {{diag::InstanceId}}", timeout=10.0, name="t", params=None):
    return {"command_id": "c-1", "name": name, "content": content, "parameters": params or [], "timeout": timeout,
            "working_dir": "", "username": ""}


AUDIT = {"who": "test", "source": "127.0.0.1"}


def records(inv, instance=LOCAL):
    return next(i for i in inv["instances"] if i["instance_id"] == instance)["records"]


def test_rate_fires_on_the_rate_and_stays_running(engine):
    inv = engine.invoke(command(), [LOCAL], {}, "Period", "rate(2m)", None, AUDIT, now=T0)
    iid = inv["invoke_id"]
    assert inv["next_run"] == T0 + 120  # not at creation (seed 001)
    engine.tick(T0 + 119)
    assert records(engine.invocation(iid)) == []
    engine.tick(T0 + 120)
    engine.drain()
    got = engine.invocation(iid)
    assert [r["status"] for r in records(got)] == ["Finished"]
    assert records(got)[0]["output"] == f"ok {LOCAL}\n"
    assert got["status"] == "Running" and got["instances"][0]["status"] == "Running"
    assert got["next_run"] == T0 + 240
    engine.tick(T0 + 250)  # late: one run, and the rate keeps its phase
    engine.drain()
    got = engine.invocation(iid)
    assert len(records(got)) == 2 and got["next_run"] == T0 + 360 and got["status"] == "Running"
    stopped = engine.stop(iid, now=T0 + 300)
    assert stopped["status"] == "Stopped" and stopped["next_run"] is None
    engine.tick(T0 + 400)
    assert len(records(engine.invocation(iid))) == 2


def test_cron_follows_the_time_zone_and_monday_is_1(engine):
    # 12:00 in Shanghai on Wednesdays (3 = WED when 1 = Monday) = 04:00 UTC
    inv = engine.invoke(command(), [LOCAL], {}, "Period", "0 0 12 ? * 3 Asia/Shanghai", None, AUDIT, now=T0)
    wed = datetime(2026, 3, 4, 4, 0, 0, tzinfo=timezone.utc).timestamp()
    assert inv["next_run"] == wed
    engine.tick(wed - 1)
    assert records(engine.invocation(inv["invoke_id"])) == []
    engine.tick(wed)
    engine.drain()
    got = engine.invocation(inv["invoke_id"])
    assert [r["status"] for r in records(got)] == ["Finished"] and got["status"] == "Running"
    assert got["next_run"] == wed + 7 * 86400


def test_cron_that_cannot_be_honoured_is_refused(engine):
    with pytest.raises(CommandError) as e:
        engine.invoke(command(), [LOCAL], {}, "Period", "0 0 12 15W * ?", None, AUDIT, now=T0)
    assert e.value.field == "frequency" and "W" in e.value.message
    with pytest.raises(CommandError) as e:
        engine.invoke(command(timeout=120), [LOCAL], {}, "Period", "0 * * * * ?", None, AUDIT, now=T0)
    assert "at least the timeout" in e.value.message


def test_at_runs_once(engine):
    at = datetime.fromtimestamp(T0 + 3600, timezone.utc).isoformat()
    inv = engine.invoke(command(), [LOCAL], {}, "Once", f"at({at})", None, AUDIT, now=T0)
    assert inv["status"] == "Running" and inv["instances"][0]["status"] == "Pending"
    engine.tick(T0 + 3600)
    engine.drain()
    engine.tick(T0 + 7200)
    got = engine.invocation(inv["invoke_id"])
    assert got["status"] == "Finished" and len(records(got)) == 1 and got["next_run"] is None


def test_stop_kills_a_running_local_record(engine):
    import time

    inv = engine.invoke(command("sleep 600", timeout=600), [LOCAL], {}, "Once", None, None, AUDIT)
    while records(engine.invocation(inv["invoke_id"]))[0]["status"] != "Running":
        time.sleep(0.02)
    engine.stop(inv["invoke_id"])
    engine.drain()
    got = engine.invocation(inv["invoke_id"])
    assert got["status"] == "Stopped" and records(got)[0]["status"] == "Stopped"


def test_agent_not_online_after_the_delivery_timeout(engine):
    inv = engine.invoke(command(), [REMOTE], {}, "Once", None, None, AUDIT, now=T0)
    engine.tick(T0 + 59)
    assert engine.invocation(inv["invoke_id"])["status"] == "Running"
    engine.tick(T0 + 61)
    got = engine.invocation(inv["invoke_id"])
    rec = records(got, REMOTE)[0]
    assert got["status"] == "Failed" and rec["error_code"] == "AgentNotOnline"


def test_a_simulated_agent_takes_its_task_and_reports(engine):
    inv = engine.invoke(command("echo hi {{diag::InstanceId}}"), [REMOTE, LOCAL], {}, "Once", None, None, AUDIT,
                        now=T0)
    assert delivery.poll(engine, "i-other", None, now=T0 + 1)["tasks"] == []  # not another instance's
    got = delivery.poll(engine, REMOTE, "b1", now=T0 + 1)
    assert [t["script"] for t in got["tasks"]] == ["echo hi i-remote"]
    assert delivery.poll(engine, REMOTE, "b1", now=T0 + 2)["tasks"] == []  # handed out once
    task = got["tasks"][0]["task_id"]
    with pytest.raises(CommandError):
        delivery.result(engine, "i-other", task, {"status": "Finished"})
    delivery.result(engine, REMOTE, task, {"status": "Finished", "exit_code": 0, "output_b64": "aGkK"})
    engine.drain()
    final = engine.invocation(inv["invoke_id"], now=T0 + 3)
    assert records(final, REMOTE)[0]["output"] == "hi\n"
    assert final["status"] == "Finished"


def test_every_reboot_fires_on_a_new_boot_id(engine):
    inv = engine.invoke(command(), [REMOTE], {}, "EveryReboot", None, None, AUDIT, now=T0)
    delivery.poll(engine, REMOTE, "boot-a", now=T0 + 1)  # the baseline
    assert records(engine.invocation(inv["invoke_id"]), REMOTE) == []
    got = delivery.poll(engine, REMOTE, "boot-b", now=T0 + 100)
    assert len(got["tasks"]) == 1
    assert engine.invocation(inv["invoke_id"])["status"] == "Running"


def test_allow_list(tmp_path):
    db = Database(tmp_path / "a.db")
    e = Commands(db, EventLog(db), Settings(local_id=LOCAL, allow=("rotate",)))
    try:
        with pytest.raises(CommandError) as err:
            e.invoke(command(name="other"), [LOCAL], {}, "Once", None, None, AUDIT)
        assert err.value.status == 403
        e.invoke(command(name="rotate"), [LOCAL], {}, "Once", None, None, AUDIT)
        e.drain()
    finally:
        e.close()
        db.close()


def test_invocations_are_audited_as_events(engine):
    inv = engine.invoke(command(), [LOCAL], {}, "Once", None, None, AUDIT, now=T0)
    engine.drain()
    ev = engine.events.list(LOCAL, types=["Command.Invoked"])
    assert len(ev) == 1 and ev[0]["details"]["labels"]["invoke_id"] == inv["invoke_id"]
    assert ev[0]["details"]["labels"]["content_sha256"] == inv["audit"]["content_sha256"]
