"""Benchmark: remote commands over real HTTP against a real `diag serve --enable-commands`.

1. `echo ok` invoked on 50 simulated agents at once (each a TaskClient polling its own
   task list every --poll seconds with its own registered agent token): time from the
   invoke to each record's `Finished` (the finish time the agent reports). Target: median
   under the poll interval plus 1 s.
2. 1,000 idle agents polling every --poll seconds (spread evenly): the server process's
   CPU (utime + stime from /proc) over --window seconds. Target: under 0.25 of a core.

Run: `.venv/bin/python bench/commands.py` (about a minute and a half).
"""

from __future__ import annotations

import sys
from pathlib import Path


import argparse
import os
import statistics
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from diag.commands.agent_tasks import TaskClient  # noqa: E402
from tests.conftest import ServeProcess  # noqa: E402

TOKEN = "bench-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api(url: str, method: str = "GET", body: dict | None = None) -> dict:
    r = requests.request(method, url, json=body, headers=AUTH, timeout=30)
    r.raise_for_status()
    return r.json()


def register(base: str, n: int) -> list[tuple[str, str]]:
    act = api(f"{base}/api/v1/activations", "POST", {"count": n})
    s = requests.Session()
    out = []
    for i in range(n):
        iid = f"i-bench-{i:04d}"
        r = s.post(f"{base}/api/v1/agents/register", json={"activation_id": act["activation_id"],
                                                           "activation_code": act["activation_code"],
                                                           "instance_id": iid}, timeout=30)
        r.raise_for_status()
        out.append((iid, r.json()["agent_token"]))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(base: str, agents: list[tuple[str, str]], poll: float) -> list[float]:
    stop = threading.Event()
    clients = [TaskClient(base, iid, tok) for iid, tok in agents]
    threads = []
    for i, c in enumerate(clients):
        c.poll_after = poll
        t = threading.Thread(target=lambda c=c, d=i * poll / len(clients): (stop.wait(d), c.run_forever(stop)),
                             daemon=True)
        t.start()
        threads.append(t)
    time.sleep(poll)  # every agent has polled once: they are "online"
    inv = api(f"{base}/api/v1/run-command", "POST", {"content": "echo ok", "instance_ids": [a for a, _ in agents]})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        inv = api(f"{base}/api/v1/invocations/{inv['invoke_id']}")
        if inv["status"] != "Running":
            break
        time.sleep(0.2)
    stop.set()
    recs = [i["records"][0] for i in inv["instances"]]
    assert all(r["status"] == "Finished" and r["output"] == "ok\n" for r in recs), inv["status"]
    return [r["finish_time"] - inv["created_at"] for r in recs]


def idle_cpu(base: str, agents: list[tuple[str, str]], poll: float, window: float, pid: int) -> tuple[float, int]:
    stop = threading.Event()
    count = [0]
    lock = threading.Lock()

    def worker(mine: list[tuple[str, str]], offset: float) -> None:
        s = requests.Session()
        stop.wait(offset)
        nxt = time.monotonic()
        while not stop.is_set():
            for iid, tok in mine:  # each agent of this worker once per poll interval
                s.get(f"{base}/api/v1/agents/{iid}/tasks", headers={"Authorization": f"Bearer {tok}"}, timeout=30)
                with lock:
                    count[0] += 1
            nxt += poll
            stop.wait(max(0.0, nxt - time.monotonic()))

    workers = 50
    for w in range(workers):
        threading.Thread(target=worker, args=(agents[w::workers], w * poll / workers), daemon=True).start()
    time.sleep(poll)  # warm up
    c0, n0, t0 = cpu_seconds(pid), count[0], time.monotonic()
    time.sleep(window)
    c1, n1, t1 = cpu_seconds(pid), count[0], time.monotonic()
    stop.set()
    return (c1 - c0) / (t1 - t0), int((n1 - n0) / (t1 - t0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poll", type=float, default=3.0, help="the agents' poll interval, seconds")
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--window", type=float, default=20.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = ServeProcess(Path(tmp) / "data", env={"DIAG_TOKEN": TOKEN, "DIAG_COMMANDS": "1"})
        try:
            served.wait_ready()
            agents = register(served.url, max(args.agents, args.idle))
            lat = latency(served.url, agents[: args.agents], args.poll)
            cpu, rate = idle_cpu(served.url, agents[: args.idle], args.poll, args.window, served.proc.pid)
        finally:
            served.stop()
    med, worst = statistics.median(lat), max(lat)
    print(f"{'measure':<44} {'value':>10} {'target':>14}")
    print(f"{'invoke -> Finished, median (' + str(args.agents) + ' agents)':<44} {med:>9.2f}s {'< ' + format(args.poll + 1, 'g') + 's':>14}")
    print(f"{'invoke -> Finished, slowest':<44} {worst:>9.2f}s {'':>14}")
    print(f"{'server CPU, ' + str(args.idle) + ' idle agents (' + str(rate) + ' polls/s)':<44} {cpu:>9.3f}  {'< 0.25 core':>14}")
    return 0 if med < args.poll + 1 and cpu < 0.25 else 1


if __name__ == "__main__":
    sys.exit(main())
