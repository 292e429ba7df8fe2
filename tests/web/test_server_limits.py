"""Issue 15, defect 3: slowloris against a real `diag serve`, with real sockets on
loopback. Failed before its fix: waitress's 100 connections were all held by one
client, and a byte now and then kept them held."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from diag.web import server as web_server
from tests.conftest import http, own_kmsg

ATTACKERS = 150


def _half_sent(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line never comes
    return s


def _closed_by_server(s: socket.socket) -> bool:
    try:
        s.setblocking(False)
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.mark.slow
def test_slowloris_from_one_client_locks_no_one_out(serve, tmp_path):
    srv = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def trickle():
        # One header byte per socket each second: waitress's idle timeout never fires.
        while not stop.wait(1.0):
            for s in list(conns):
                try:
                    s.send(b"X")
                except OSError:
                    pass

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(ATTACKERS):
            try:
                conns.append(_half_sent(srv.port))
            except OSError:
                break  # refused or reset already: fine, the server is the one choosing
        trickler.start()
        time.sleep(1.5)  # the server has accepted what it will accept
        t0 = time.monotonic()
        status, _, body = http("GET", srv.url + "/healthz", timeout=5)
        assert status == 200, body
        now = time.time()
        status, _, body = http("POST", srv.url + "/api/v1/ingest", {
            "instance_id": "agent-under-attack", "batch_id": "b-1",
            "samples": [{"metric": "jobs", "labels": {}, "value": 7, "ts": now}]}, timeout=5)
        assert status == 202, body
        assert time.monotonic() - t0 < 10
        # A trickle does not keep a request alive past its header deadline.
        deadline = time.monotonic() + web_server.HEADER_DEADLINE_S + 5
        open_ = list(conns)
        while open_ and time.monotonic() < deadline:
            open_ = [s for s in open_ if not _closed_by_server(s)]
            time.sleep(0.5)
        assert not open_, f"{len(open_)} trickling connections still open after the header deadline"
    finally:
        stop.set()
        trickler.join(5) if trickler.is_alive() else None
        for s in conns:
            s.close()


def test_one_address_holds_at_most_its_share_of_connections(serve, tmp_path):
    srv = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
    conns = []
    try:
        for _ in range(web_server.PER_PEER + 20):
            conns.append(_half_sent(srv.port))
        time.sleep(2)  # the server's loop has accepted them all (and evicted the surplus)
        alive = [s for s in conns if not _closed_by_server(s)]
        assert len(alive) <= web_server.PER_PEER
        assert conns[-1] in alive  # the newest stays: the oldest unfinished made room
    finally:
        for s in conns:
            s.close()
