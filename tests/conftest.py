"""Shared test helpers: fixture trees, free ports, a real `diag serve` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collectors.roots import Roots

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HOST_T0 = Roots.under(FIXTURES / "host" / "t0")
HOST_T1 = Roots.under(FIXTURES / "host" / "t1")
IN_CI = os.environ.get("CI") == "true"


def need_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, elsewhere it skips it."""
    path = shutil.which(name)
    if path is None:
        (pytest.fail if IN_CI else pytest.skip)(f"{name} is not installed (make system-deps as root)")
    return path


def collected_service(data_dir: Path, collections: int = 1, pause: float = 0.0, **flags):
    """A real Service (diag.service) on `data_dir` that has run `collections` cycles,
    `pause` seconds apart (rates need a second reading, CPU time moves in 10 ms ticks)."""
    from diag.config import load
    from diag.service import Service

    s = Service(load(env={}, data_dir=str(data_dir), **flags))
    for i in range(collections):
        if i and pause:
            time.sleep(pause)
        s.collect()
    return s


def own_kmsg(directory: Path) -> Path:
    """An empty kernel log for a service that must find a healthy machine: the real faults
    other tests make (hung tasks, I/O errors, OOM kills) stay in the host's ring buffer for
    the rest of the boot. Pass it as `--kmsg` or `paths={"kmsg": ...}`."""
    path = directory / "own.kmsg"
    path.touch()
    return path


def scraped_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of `name` with `labels` in a Prometheus text scrape."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: object | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class ServeProcess:
    """A real `diag serve` on a free loopback port, with its own data dir (the benchmarks
    use it too). DIAG_* variables of the caller's environment are left out: only `env`
    configures it."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / f"serve-{self.port}.log", "w+b")
        cmd = [sys.executable, "-m", "diag.cli", "serve", "--port", str(self.port), "--data-dir", str(data_dir), *args]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DIAG_")}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**inherited, **(env or {})})

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"diag serve exited {self.proc.returncode}: {self.output()}")
            try:
                status, _, body = http("GET", self.url + "/healthz", timeout=2)
                if status == 200 and json.loads(body).get("last_collection"):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"diag serve not ready in {timeout}s: {self.output()}")

    def wait_diagnosed(self, timeout: float = 90) -> None:
        """Until the first scheduled diagnosis is stored: the start-up jobs are done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if json.loads(http("GET", self.url + "/api/v1/diagnoses?limit=1")[2])["reports"]:
                return
            time.sleep(0.5)
        raise AssertionError(f"no scheduled diagnosis in {timeout}s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture
def serve(tmp_path):
    """Start `diag serve` with extra args: `serve("--interval", "1s")`; stopped after the test."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None, data_dir: Path | None = None) -> ServeProcess:
        p = ServeProcess(data_dir or tmp_path / f"data{len(started)}", *args, env=env)
        started.append(p)
        p.wait_ready()
        return p

    yield start
    for p in started:
        p.stop()
