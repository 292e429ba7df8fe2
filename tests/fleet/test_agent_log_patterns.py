"""An agent's own log rules (config log_patterns) reach a real server as Custom.<name>
events: a line appended to a file the agent tails becomes an event of that instance."""

from __future__ import annotations

import pytest
from tests.fleet.fleet_helpers import AgentProcess, Server, get_json, kmsg_record, wait_for

INGEST = "ingest-token-patterns"


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path, "--interval", "1s", env={"DIAG_INGEST_TOKEN": INGEST}).start()
    yield s
    s.stop()


def test_an_agent_file_rule_pushes_a_matched_line_as_a_custom_event(tmp_path, server):
    app_log = tmp_path / "app.log"
    app_log.write_text("starting\npanic: before the agent ran (history, not news)\n")
    kmsg = tmp_path / "kmsg"
    kmsg.write_text(kmsg_record(1, "booted quietly", prio=6))
    config = tmp_path / "agent.yaml"
    config.write_text(f"log_patterns:\n  AppCrash:\n    source: {app_log}\n"
                      "    pattern: 'panic: (?P<what>\\w+)'\n    level: CRITICAL\n")
    a = AgentProcess(tmp_path, server.url, "--config", str(config), "--instance-id", "pat-1", "--interval", "1s",
                     "--token", INGEST, "--kmsg", str(kmsg))
    try:
        def seen() -> bool:
            _, body = get_json(server.url + "/api/v1/instances")
            return any(i["instance_id"] == "pat-1" and i["last_seen"] for i in body["instances"])

        wait_for(seen, "the agent's first batch", 40, a)

        def custom() -> list[dict]:
            _, body = get_json(server.url + "/api/v1/events?instance_id=pat-1")
            return [e for e in body["events"] if e["type"].startswith("Custom.")]

        assert custom() == []  # the line written before the agent started is not news
        with app_log.open("a") as f:
            f.write("panic: boom in worker 3\n")
        events = wait_for(custom, "the Custom.AppCrash event", 30, a)
        assert len(events) == 1, events
        e = events[0]
        assert (e["type"], e["level"]) == ("Custom.AppCrash", "CRITICAL")
        details = e["details"]
        assert "panic: boom in worker 3" in details["message"]
        assert details["labels"]["what"] == "boom" and details["labels"]["source"] == str(app_log)
    finally:
        assert a.stop() == 0, a.output()


def test_an_agent_with_a_bad_rule_does_not_start(tmp_path, server):
    config = tmp_path / "agent.yaml"
    config.write_text("log_patterns:\n  AppCrash:\n    source: /var/log/app.log\n    pattern: 'panic: (\\w+'\n")
    a = AgentProcess(tmp_path, server.url, "--config", str(config), "--token", INGEST)
    assert a.proc.wait(30) == 2
    assert (f"diag agent: {config}:4: log_patterns.AppCrash.pattern: regex does not compile: missing ), "
            "unterminated subpattern at position 7") in a.output()
