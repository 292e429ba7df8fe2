"""Issue 20, row 7: every finished execution record is appended to a JSON-lines file and
POSTed to a webhook (a real HTTP receiver on 127.0.0.1), at least once: a failing receiver
gets it on a retry, a receiver down across a restart of the service gets it after, with
the same Idempotency-Key; a 4xx is not retried; bad settings are refused with file, line
and field."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from diag.commands.engine import Commands, Settings
from diag.config import ConfigError, load
from diag.db import Database
from diag.events import EventLog
from tests.conftest import free_port, http
from tests.fleet.fleet_helpers import Server, wait_for

TOKEN = "admin-token-records"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Receiver:
    """A webhook receiver: answers `fail` with its status until that many requests came."""

    def __init__(self, port: int = 0, fail: int = 0, status: int = 503) -> None:
        self.got: list[tuple[dict, dict]] = []
        self.fail, self.status = fail, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.got.append((dict(self.headers), body))
                code = outer.status if len(outer.got) <= outer.fail else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def call(server, method, path, body=None):
    status, _, raw = http(method, server.url + "/api/v1" + path, body, AUTH)
    return status, (json.loads(raw) if raw else None)


def start_server(tmp_path, url: str, jsonl) -> Server:
    cfg = tmp_path / "diag.yaml"
    cfg.write_text(f"commands:\n  records:\n    file: {jsonl}\n    webhook: {url}\n"
                   f"    headers: {{X-Receiver-Key: k1}}\n    retry_base: 0.3s\n    retry_cap: 1s\n")
    return Server(tmp_path, "--interval", "1s", "--enable-commands", "--config", str(cfg),
                  env={"DIAG_TOKEN": TOKEN}).start()


def run_local(server, content, parameters=None):
    local = call(server, "GET", "/instances")[1]["instances"][0]["instance_id"]
    status, inv = call(server, "POST", "/run-command", {"name": "rec", "content": content, "instance_ids": [local],
                                                        "parameters": parameters or {}})
    assert status == 201, inv
    return local, inv["invoke_id"]


def test_records_reach_the_file_and_a_failing_webhook(tmp_path):
    receiver = Receiver(fail=2)
    jsonl = tmp_path / "records.jsonl"
    server = start_server(tmp_path, receiver.url, jsonl)
    try:
        local, invoke_id = run_local(server, "echo hello {{who}}; exit 2", {"who": "world"})
        wait_for(lambda: len(receiver.got) >= 3, "the webhook's third attempt", 30)
        wait_for(lambda: jsonl.exists() and jsonl.read_text().strip(), "the JSON-lines file", 30)
    finally:
        server.stop()
        receiver.close()
    (line,) = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert {k: line[k] for k in ("invoke_id", "name", "type", "parameters", "instance_id", "status", "exit_code",
                                 "error_code", "output", "kind")} == {
        "invoke_id": invoke_id, "name": "rec", "type": "RunShellScript", "parameters": {"who": "world"},
        "instance_id": local, "status": "Finished", "exit_code": 2, "error_code": "ExitCodeNonzero",
        "output": "hello world\n", "kind": "command"}
    assert line["created_at"] <= line["start_time"] <= line["finish_time"] and line["command_id"]
    assert len(receiver.got) == 3  # two 503s, then delivered once, never again
    keys = {h["Idempotency-Key"] for h, _ in receiver.got}
    bodies = [b for _, b in receiver.got]
    assert keys == {bodies[0]["delivery_id"]} and all(b == bodies[0] for b in bodies)
    assert {k: v for k, v in bodies[0].items() if k != "delivery_id"} == \
        {k: v for k, v in line.items() if k != "delivery_id"}
    assert receiver.got[0][0]["X-Receiver-Key"] == "k1"
    db = sqlite3.connect(server.data_dir / "diag.db")
    rows = db.execute("SELECT sink, state, attempts FROM command_record_outbox ORDER BY sink").fetchall()
    db.close()
    assert rows == [("file", "delivered", 1), ("webhook", "delivered", 3)]


def test_the_outbox_survives_a_restart_while_the_receiver_is_down(tmp_path):
    port = free_port()
    jsonl = tmp_path / "records.jsonl"
    server = start_server(tmp_path, f"http://127.0.0.1:{port}/hook", jsonl)
    receiver = None
    try:
        _, invoke_id = run_local(server, "echo once")
        wait_for(lambda: jsonl.exists() and invoke_id in jsonl.read_text(), "the file line", 30)
        server.stop()  # the webhook row is still pending: nothing listens on the port
        db = sqlite3.connect(server.data_dir / "diag.db")
        (state, attempts), = db.execute("SELECT state, attempts FROM command_record_outbox WHERE sink = 'webhook'")
        db.close()
        assert state == "pending" and attempts >= 1
        receiver = Receiver(port=port)
        server.start()
        wait_for(lambda: receiver.got, "the record after the restart", 30)
        time.sleep(2)
    finally:
        server.stop()
        if receiver:
            receiver.close()
    assert [b["invoke_id"] for _, b in receiver.got] == [invoke_id]
    assert len(jsonl.read_text().splitlines()) == 1  # the file had it already: not appended again


def test_a_4xx_is_not_retried(tmp_path):
    receiver = Receiver(fail=99, status=400)
    db = Database(tmp_path / "diag.db")
    settings = SimpleNamespace(file=None, webhook=receiver.url, headers={}, retry_base=0.1, retry_cap=0.1,
                               give_up_after=3600)
    e = Commands(db, EventLog(db), Settings(local_id="i-local"), local_boot_id="b", records=settings)
    try:
        cmd = {"command_id": "c-1", "name": "x", "content": "true", "parameters": [], "timeout": 10.0,
               "working_dir": "", "username": ""}
        e.invoke(cmd, ["i-local"], {}, "Once", None, None, {"who": "t"})
        e.drain()
        for _ in range(3):
            e.records.deliver(time.time() + 10)
        assert len(receiver.got) == 1 and e.records.counts() == {"webhook:failed": 1}
    finally:
        e.close()
        db.close()
        receiver.close()


@pytest.mark.parametrize("records, field, words", [
    ("webhook: ftp://x", "commands.records.webhook", "http:// or https://"),
    ("file: relative.jsonl", "commands.records.file", "absolute"),
    ("file: /no/such/dir/r.jsonl", "commands.records.file", "not a directory"),
    ("retry_base: soon", "commands.records.retry_base", ""),
    ("webhok: http://x", "commands.records.webhok", "unknown setting"),
])
def test_bad_settings_are_refused_with_file_line_and_field(tmp_path, records, field, words):
    cfg = tmp_path / "diag.yaml"
    cfg.write_text(f"enable_commands: true\ncommands:\n  records:\n    {records}\n")
    with pytest.raises(ConfigError) as err:
        load(cfg, env={})
    assert (err.value.path, err.value.line, err.value.field) == (str(cfg), 4, field), err.value
    assert words in err.value.message
