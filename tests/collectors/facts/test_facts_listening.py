"""Listening sockets and their owners: a fixture tree, and a socket this test opens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from collectors.facts.listening import listening
from collectors.facts.processes import scan

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "facts"


def test_fixture_listeners_and_owners():
    proc = FIX / "running" / "proc"
    socks, err = listening(proc, scan(proc))
    assert err is None
    assert socks == [
        {"proto": "tcp", "family": "inet", "address": "127.0.0.53", "port": 53, "pids": [], "process": None},
        {"proto": "tcp", "family": "inet", "address": "0.0.0.0", "port": 2222, "pids": [812], "process": "sshd"},
        {"proto": "tcp", "family": "inet6", "address": "::", "port": 2222, "pids": [812], "process": "sshd"},
        {"proto": "udp", "family": "inet", "address": "127.0.0.53", "port": 53, "pids": [], "process": None},
        {"proto": "udp", "family": "inet", "address": "0.0.0.0", "port": 68, "pids": [455], "process": "dhclient"},
    ]  # the ESTABLISHED session socket of 2301 is not listed


def test_live_socket_of_this_test_is_seen():
    with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        s.bind(("127.0.0.1", 0))
        s.listen()
        u.bind(("127.0.0.1", 0))
        port, uport = s.getsockname()[1], u.getsockname()[1]
        socks, err = listening(Path("/proc"), scan(Path("/proc")))
    assert err is None
    me = [x for x in socks if x["proto"] == "tcp" and x["port"] == port]
    assert me == [{"proto": "tcp", "family": "inet", "address": "127.0.0.1", "port": port,
                   "pids": [os.getpid()], "process": Path("/proc/self/comm").read_text().strip()}]
    assert [x["pids"] for x in socks if x["proto"] == "udp" and x["port"] == uport] == [[os.getpid()]]
    with socket.socket() as c:  # a closed listener is gone from the next snapshot
        c.bind(("127.0.0.1", 0))
        closed = c.getsockname()[1]
    socks, _ = listening(Path("/proc"), scan(Path("/proc")))
    assert not [x for x in socks if x["port"] == closed and x["proto"] == "tcp"]
