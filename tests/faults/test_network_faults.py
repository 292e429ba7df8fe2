"""Accept-queue overflows and UDP receive-buffer drops, made for real on loopback."""

import socket

from tests.faults.helpers import diagnose, result, wait_for


def kernel_drops(url):
    return result(diagnose(url, "network.kernel_drops"), "network.kernel_drops")


def test_listen_backlog_overflow_is_reported_with_counts_and_advice(serve):
    p = serve("--interval", "1s")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # never accepted: the accept queue fills at once
    clients = []
    try:
        for _ in range(30):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(server.getsockname())
            clients.append(c)
        got = wait_for(lambda: (r := kernel_drops(p.url))["status"] == "warning"
                       and r["evidence"]["counts"].get("tcp_listen_overflows", {}).get("count", 0) > 0 and r)
        assert got, kernel_drops(p.url)
        assert "somaxconn" in got["recommendation"]
    finally:
        for c in clients:
            c.close()
        server.close()


def test_udp_receive_buffer_errors_are_reported(serve):
    p = serve("--interval", "1s")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # tiny, and never read
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(2000):
            tx.sendto(b"x" * 512, rx.getsockname())
        got = wait_for(lambda: (r := kernel_drops(p.url))["status"] == "warning"
                       and r["evidence"]["counts"].get("udp_rcvbuf_errors", {}).get("count", 0) > 0 and r)
        assert got, kernel_drops(p.url)
        assert "rmem" in got["recommendation"]
    finally:
        rx.close()
        tx.close()
