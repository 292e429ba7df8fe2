"""Issue 20, row 12, with real `diag agent` processes: an agent killed while its task runs
gives InstanceRestarted once its next process polls; a task no agent fetches although the
instance is online (an agent with the shared ingest token polls no tasks) gives
DeliveryTimeout; "after next boot" and "after every boot" fire across real agent restarts
that report a new boot id (the agent's boot_id_file)."""

import json
import os
import time
from pathlib import Path

import pytest

from diag.commands import cgroups
from tests.conftest import http
from tests.fleet.fleet_helpers import AgentProcess, Server, wait_for

TOKEN, INGEST = "admin-token-restarts", "ingest-token-restarts"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.slow


def call(server, method, path, body=None):
    status, _, raw = http(method, server.url + "/api/v1" + path, body, AUTH)
    return status, (json.loads(raw) if raw else None)


@pytest.fixture
def server(tmp_path):
    cfg = tmp_path / "commands.yaml"
    cfg.write_text("commands:\n  delivery_timeout: 10s\n")
    s = Server(tmp_path, "--interval", "1s", "--enable-commands", "--config", str(cfg),
               env={"DIAG_TOKEN": TOKEN, "DIAG_INGEST_TOKEN": INGEST}).start()
    yield s
    s.stop()


class Agent:
    """One instance's agent, restartable: the same data dir (so the same agent token) and
    a boot id file the test rewrites to stand for a reboot."""

    def __init__(self, tmp_path, server, instance_id, boot="boot-A"):
        self.tmp, self.server, self.instance_id = tmp_path, server, instance_id
        self.boot_file = tmp_path / f"{instance_id}-boot_id"
        self.boot_file.write_text(boot + "\n")
        self.config = tmp_path / f"{instance_id}-agent.yaml"
        self.config.write_text(f"boot_id_file: {self.boot_file}\n")
        status, act = call(server, "POST", "/activations", {"count": 1})
        assert status == 201, act
        self.act = act
        self.starts = 0
        self.proc = None

    def start(self):
        self.starts += 1
        self.proc = AgentProcess(self.tmp, self.server.url, "--config", str(self.config), "--instance-id",
                                 self.instance_id, "--interval", "1s", "--activation-id", self.act["activation_id"],
                                 "--activation-code", self.act["activation_code"], name=self.instance_id)
        wait_for(lambda: (self.proc.data_dir / "agent-token").exists(), "registration", 30, self.proc)
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop()


def run(server, agent, content, timeout=30):
    status, inv = call(server, "POST", "/run-command", {"content": content, "instance_ids": [agent.instance_id],
                                                        "timeout": timeout})
    assert status == 201, inv
    return inv["invoke_id"]


def final(server, invoke_id, agent, timeout=60):
    def done():
        inv = call(server, "GET", f"/invocations/{invoke_id}")[1]
        return inv if inv["status"] not in ("Running", "Stopping") else None
    return wait_for(done, f"invocation {invoke_id} to end", timeout, agent.proc)


def records(server, invoke_id):
    return call(server, "GET", f"/invocations/{invoke_id}")[1]["instances"][0]["records"]


def _run_cgroups() -> set[Path]:
    out = set()
    for mount, own, _, _ in cgroups._hierarchies(Path("/proc")):
        runs = mount / own.lstrip("/") / cgroups.DIR_NAME
        if runs.is_dir():
            out |= {p for p in runs.iterdir() if p.is_dir()}
    return out


def test_an_agent_killed_during_a_task_gives_instance_restarted(tmp_path, server):
    before = _run_cgroups()
    agent = Agent(tmp_path, server, "restart-1").start()
    try:
        invoke_id = run(server, agent, "sleep 8; echo done", timeout=120)
        wait_for(lambda: records(server, invoke_id) and records(server, invoke_id)[0]["status"] == "Running",
                 "the agent to take the task", 30, agent.proc)
        agent.proc.proc.kill()  # a crash: no result is ever posted by this process
        agent.proc.proc.wait(10)
        killed = time.monotonic()
        agent.start()  # the same machine (same boot id), a new agent process
        inv = final(server, invoke_id, agent)
        rec = inv["instances"][0]["records"][0]
        assert (inv["status"], rec["status"], rec["error_code"]) == ("Failed", "Failed", "InstanceRestarted"), rec
        assert "agent restarted" in rec["error_info"]
        assert time.monotonic() - killed < 60  # at the new process's first poll, not the 120 s timeout
        # The new process runs new tasks as usual.
        rec = final(server, run(server, agent, "echo again"), agent)["instances"][0]["records"][0]
        assert (rec["status"], rec["output"]) == ("Finished", "again\n")
    finally:
        agent.stop()
        # The killed agent never released its run's cgroup (the next run's sweep would, a
        # minute on): remove it once its `sleep 8` is over, so no later test sees it.
        deadline = time.monotonic() + 20
        for left in _run_cgroups() - before:
            while time.monotonic() < deadline and (left / "cgroup.procs").exists() \
                    and (left / "cgroup.procs").read_text().strip():
                time.sleep(0.2)
            try:
                left.rmdir()
            except OSError:
                pass


def test_a_sweep_removes_only_old_empty_run_cgroups(tmp_path):
    old, fresh, busy = (tmp_path / n for n in ("old", "fresh", "busy"))
    for d in (old, fresh, busy):
        d.mkdir()
    (busy / "member").write_text("")  # stands for a cgroup with processes: rmdir fails
    past = time.time() - 2 * cgroups.STALE_AFTER
    os.utime(old, (past, past))
    os.utime(busy, (past, past))
    assert cgroups.sweep(tmp_path) == 1
    assert not old.exists() and fresh.exists() and busy.exists()


def test_a_task_no_agent_fetches_on_an_online_instance_gives_delivery_timeout(tmp_path, server):
    # The shared ingest token pushes data but may not poll tasks: the instance is online.
    proc = AgentProcess(tmp_path, server.url, "--token", INGEST, "--instance-id", "ingest-only-1", "--interval", "1s",
                        name="ingest-only")
    try:
        wait_for(lambda: any(i["instance_id"] == "ingest-only-1"
                             for i in call(server, "GET", "/instances")[1]["instances"]), "data from the agent", 30, proc)
        status, inv = call(server, "POST", "/run-command", {"content": "echo never", "instance_ids": ["ingest-only-1"]})
        assert status == 201, inv
        started = time.monotonic()

        def done():
            got = call(server, "GET", f"/invocations/{inv['invoke_id']}")[1]
            return got if got["status"] not in ("Running", "Stopping") else None
        got = wait_for(done, "the delivery timeout", 60, proc)
        rec = got["instances"][0]["records"][0]
        assert (got["status"], rec["error_code"]) == ("Failed", "DeliveryTimeout"), rec
        assert "is online" in rec["error_info"] and rec["output"] == ""
        assert time.monotonic() - started >= 5  # after the 10 s delivery timeout, not at once
        assert proc.proc.poll() is None  # the agent itself is fine
    finally:
        proc.stop()


def test_after_next_boot_and_after_every_boot_across_real_restarts(tmp_path, server):
    agent = Agent(tmp_path, server, "reboots-1", boot="boot-A").start()
    try:
        final(server, run(server, agent, "true"), agent)  # it polls, so boot-A is known
        ids = {}
        for mode in ("NextRebootOnly", "EveryReboot"):
            status, inv = call(server, "POST", "/run-command", {"content": f"echo {mode} $(cat {agent.boot_file})",
                                                                "instance_ids": [agent.instance_id],
                                                                "repeat_mode": mode})
            assert status == 201 and inv["status"] == "Running", inv
            ids[mode] = inv["invoke_id"]

        def restart(boot):
            agent.stop()
            if boot:
                agent.boot_file.write_text(boot + "\n")
            agent.start()
            final(server, run(server, agent, "true"), agent)  # it has polled with this boot id

        restart(None)  # the agent restarts, the machine did not: nothing fires
        assert records(server, ids["NextRebootOnly"]) == [] and records(server, ids["EveryReboot"]) == []

        restart("boot-B")
        for mode in ids:
            wait_for(lambda: [r["status"] for r in records(server, ids[mode])] == ["Finished"], f"{mode} to run",
                     30, agent.proc)
            assert records(server, ids[mode])[0]["output"] == f"{mode} boot-B\n"
        nxt = call(server, "GET", f"/invocations/{ids['NextRebootOnly']}")[1]
        every = call(server, "GET", f"/invocations/{ids['EveryReboot']}")[1]
        assert (nxt["status"], every["status"]) == ("Finished", "Running")  # every boot: still waiting

        restart("boot-C")
        wait_for(lambda: len(records(server, ids["EveryReboot"])) == 2, "EveryReboot to run again", 30, agent.proc)
        assert [r["output"] for r in records(server, ids["EveryReboot"])] == ["EveryReboot boot-B\n",
                                                                             "EveryReboot boot-C\n"]
        assert len(records(server, ids["NextRebootOnly"])) == 1  # only the next boot

        status, _ = call(server, "POST", f"/invocations/{ids['EveryReboot']}/stop")
        assert status == 200
        restart("boot-D")
        assert len(records(server, ids["EveryReboot"])) == 2  # stopped: no more
    finally:
        agent.stop()
