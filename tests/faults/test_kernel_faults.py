"""Hung-task and soft-lockup lines in the real /dev/kmsg, found by the real service;
a restart neither forgets the problem nor reports the old event twice."""

import json
import os
import uuid

import pytest

from tests.conftest import http
from tests.faults.helpers import diagnose, result, wait_for


@pytest.fixture
def drill_config(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("writing /dev/kmsg needs root")
    # Lines written from user space are no kernel finding by default; this drill says they are.
    cfg = tmp_path / "drill.yaml"
    cfg.write_text("kmsg_user_records: true\n")
    return cfg


def events_with(url, marker):
    events = json.loads(http("GET", url + "/api/v1/events")[2])["events"]
    return [e for e in events if marker in json.dumps(e)]


def test_hung_task_and_soft_lockup_are_kernel_faults_and_survive_a_restart(serve, drill_config, tmp_path):
    data = tmp_path / "data"
    p = serve("--interval", "1s", "--config", str(drill_config), data_dir=data)
    task = "dt" + uuid.uuid4().hex[:10]
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(f"<3>INFO: task {task}:4242 blocked for more than 120 seconds.\n")
        kmsg.flush()
        kmsg.write(f"<0>watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [{task}:4243]\n")
    mine = wait_for(lambda: len(events_with(p.url, task)) >= 2 and events_with(p.url, task))
    assert sorted(e["type"] for e in mine) == ["Kernel.HungTask", "Kernel.SoftLockup"]
    fault = result(diagnose(p.url, "state.kernel_fault"), "state.kernel_fault")
    assert fault["status"] == "critical" and task in json.dumps(fault["evidence"])
    assert p.stop() == 0

    again = serve("--interval", "1s", "--config", str(drill_config), data_dir=data)
    wait_for(lambda: json.loads(http("GET", again.url + "/healthz")[2]).get("last_collection"))
    after = result(diagnose(again.url, "state.kernel_fault"), "state.kernel_fault")
    assert after["status"] == "critical", "a restart forgot an active problem"
    assert sorted(e["event_id"] for e in events_with(again.url, task)) == sorted(e["event_id"] for e in mine)
