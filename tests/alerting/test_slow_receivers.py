"""Hostile webhook receivers on loopback (issue 15, defects 5 and 10): one that trickles a
byte a second never finishing its answer, and one that streams a body far larger than
any answer needs. Neither may hold another contact's notices, hold an attempt past its
deadline, or cost the service memory; their notices go on through the outbox."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import psutil
import pytest
from tests.alerting.alerting_helpers import Receiver, policy, put

COND = [{"metric": "cpu_usage", "period": "1m", "comparison": ">", "threshold": 90, "severity": "critical"}]
DEADLINE = 2.0


class RawReceiver:
    """A loopback socket server that reads each request whole, records when it came, then
    answers with `answer(conn)` (which may take for ever; it stops when the client hangs up)."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.arrivals: list[float] = []
        self.closed_after: list[float] = []  # seconds from the request to the client hanging up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            t = time.monotonic()
            self.arrivals.append(t)
            try:
                self.answer(conn, self._stop)
            except OSError:  # the client hung up: what the service is meant to do
                pass
            self.closed_after.append(time.monotonic() - t)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def _recv_eof(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def trickle_headers(conn: socket.socket, stop: threading.Event) -> None:
    """A status line, then one byte of a header a second: the answer never ends, and no
    single read ever waits long enough for a per-read timeout to fire."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stop.wait(1.0) and not _recv_eof(conn):
        conn.sendall(b"a")


def trickle_error_body(conn: socket.socket, stop: threading.Event) -> None:
    """A complete 503 head, then its body a byte a second: the detail read must be cut too."""
    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(1.0) and not _recv_eof(conn):
        conn.sendall(b"x")


def huge_body(status: int):
    """A head announcing 200 MB, then the body as fast as the socket takes it, from one
    reused block (the receiver lives in this process: it must not grow either)."""
    block = b"y" * 65536
    total = 200 * 1024 * 1024

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {total}\r\nContent-Type: text/plain\r\n\r\n".encode())
        sent = 0
        while sent < total and not stop.is_set():
            conn.sendall(block)
            sent += len(block)

    return answer


@pytest.fixture
def raw():
    made: list[RawReceiver] = []

    def make(answer) -> RawReceiver:
        r = RawReceiver(answer)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def _group(svc, *urls: str) -> str:
    """One contact per URL, in this order, all in one group."""
    ids = [svc.alerting.save_contact({"name": f"c{k}", "channels": [{"type": "webhook", "url": u}]})["contact_id"]
           for k, u in enumerate(urls)]
    return svc.alerting.save_group({"name": "oncall", "contacts": ids})["contact_group_id"]


def _start() -> float:
    # A recent whole minute: the rows must not be older than give_up_after on the wall clock.
    return time.time() // 60 * 60 - 180


def _fire(svc, group: str, start: float) -> None:
    policy(svc, contact_groups=[group], conditions=COND)
    put(svc, "web1", "cpu_usage", start, [95])
    svc.alerting.evaluate(now=start + 61)


def _resolve(svc, start: float) -> None:
    put(svc, "web1", "cpu_usage", start + 60, [10])
    svc.alerting.evaluate(now=start + 121)


def _bounded(fn, limit: float) -> Any:
    """fn() in a thread; fails the test (instead of hanging it) if fn outlives `limit`."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(limit)
    assert not t.is_alive(), f"still delivering after {limit} s"
    return out[0]


def _deliveries(svc) -> list[tuple[str, str]]:
    return [(h["channel"], h["outcome"] + " " + h["detail"]) for h in reversed(svc.alerting.repo.history())
            if h["kind"] == "delivery"]


def test_a_trickling_receiver_is_cut_at_the_deadline_and_holds_no_other_contact(svc, receiver, raw):
    svc.alerting.outbox.deadline = DEADLINE
    slow = raw(trickle_headers)
    start = _start()
    _fire(svc, _group(svc, slow.url, receiver.url), start)  # the slow contact's row comes first

    t0 = time.monotonic()
    got: list[Any] = []
    passing = threading.Thread(target=lambda: got.append(svc.alerting.deliver()), daemon=True)
    passing.start()
    while not receiver.bodies and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    # The healthy contact has its notice at once, while the slow one's attempt is in flight.
    assert receiver.bodies and receiver.bodies[0]["status"] == "firing"
    assert time.monotonic() - t0 < 1.0 and passing.is_alive()
    passing.join(DEADLINE + 5)
    assert not passing.is_alive(), "the pass outlived the slow receiver's deadline"
    took = time.monotonic() - t0
    assert got == [{"delivered": 1, "retry": 1}]
    assert DEADLINE - 0.2 <= took < DEADLINE + 1.5
    assert len(slow.arrivals) == 1
    deadline_cut = [d for c, d in _deliveries(svc) if slow.url in c]
    assert deadline_cut == [f"retry attempt 1: no answer within the {DEADLINE:g} s deadline of an attempt"]
    time.sleep(0.3)
    assert slow.closed_after and slow.closed_after[0] < DEADLINE + 1.5  # the connection was really dropped

    # Retried later through the outbox; while that attempt hangs, the resolved notice
    # still reaches the healthy contact, and the busy lane is not doubled.
    assert _bounded(lambda: svc.alerting.deliver(now=time.time() + 30, wait=0), 1) == {}
    _resolve(svc, start)
    t1 = time.monotonic()
    assert _bounded(lambda: svc.alerting.deliver(now=time.time() + 30, wait=DEADLINE + 1), DEADLINE + 3) == \
        {"delivered": 1}
    assert time.monotonic() - t1 < 1.0
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]
    assert len(slow.arrivals) == 2
    time.sleep(DEADLINE + 0.5)  # the retry's own deadline
    outcomes = [d.split(":")[0] for c, d in _deliveries(svc) if slow.url in c]
    assert outcomes == ["retry attempt 1", "retry attempt 2"]
    assert svc.alerting.outbox.counts() == {"delivered": 2, "pending": 2}


def test_a_trickled_error_body_is_cut_at_the_deadline_too(svc, raw):
    svc.alerting.outbox.deadline = DEADLINE
    slow = raw(trickle_error_body)
    _fire(svc, _group(svc, slow.url), _start())
    t0 = time.monotonic()
    assert _bounded(svc.alerting.deliver, DEADLINE + 5) == {"retry": 1}
    assert DEADLINE - 0.2 <= time.monotonic() - t0 < DEADLINE + 1.5
    ((_, detail),) = _deliveries(svc)
    assert detail.startswith("retry attempt 1: HTTP 503")


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (503, "retry")])
def test_a_huge_answer_is_not_read(svc, raw, status, outcome):
    big = raw(huge_body(status))
    _fire(svc, _group(svc, big.url), _start())
    me = psutil.Process()
    before = me.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        got = _bounded(svc.alerting.deliver, 30)
    finally:
        done.set()
        sampler.join()
    assert got == {outcome: 1}  # judged by the status code alone
    assert peak[0] - before < 16 * 1024 * 1024, f"RSS grew by {(peak[0] - before) / 2**20:.0f} MiB"
    time.sleep(0.3)
    assert big.closed_after, "the receiver was never hung up on"
    ((_, detail),) = _deliveries(svc)
    assert detail == ("delivered attempt 1: HTTP 200" if status == 200 else
                      "retry attempt 1: HTTP 503: " + "y" * 200)
