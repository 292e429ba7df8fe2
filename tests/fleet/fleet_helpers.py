"""Real `diag agent` processes for the fleet tests, and a kmsg file timed for this boot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, http

BTIME = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))


def kmsg_record(seq: int, message: str, at: float | None = None, prio: int = 3) -> str:
    """One record as /dev/kmsg gives it, stamped `at` (default now) on this machine's boot clock."""
    usec = int(((time.time() if at is None else at) - BTIME) * 1e6)
    return f"{prio},{seq},{usec},-;{message}\n"


def hung_task(seq: int, task: str, pid: int) -> str:
    return kmsg_record(seq, f"INFO: task {task}:{pid} blocked for more than 122 seconds.")


class AgentProcess:
    def __init__(self, tmp: Path, server: str, *args: str, name: str = "agent", env: dict | None = None) -> None:
        self.data_dir = tmp / f"{name}-data"
        self.log = open(tmp / f"{name}.log", "w+b")
        cmd = [sys.executable, "-m", "diag.cli", "agent", "--server", server, "--data-dir", str(self.data_dir), *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def wait_for(predicate, what: str, timeout: float = 40.0, *procs: AgentProcess):
    """Poll until predicate() is truthy; the failure names what was awaited and the agents' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    logs = "\n".join(p.output() for p in procs)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def get_json(url: str, token: str | None = None):
    status, _, body = http("GET", url, headers={"Authorization": f"Bearer {token}"} if token else {})
    return status, (json.loads(body) if body else None)


class Server:
    """A real `diag serve` that can be stopped and started again on the same port and data dir."""

    def __init__(self, tmp: Path, *args: str, env: dict | None = None) -> None:
        from tests.conftest import free_port

        self.tmp, self.args, self.env = tmp, args, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = tmp / "server-data"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "Server":
        self.starts += 1
        self.log = open(self.tmp / f"serve-{self.starts}.log", "w+b")
        cmd = [sys.executable, "-m", "diag.cli", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
               *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"diag serve exited: {self.output()}")
            try:
                return http("GET", self.url + "/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, "diag serve to answer /healthz", 30)
        return self

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
