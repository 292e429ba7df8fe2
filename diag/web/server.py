"""The HTTP server of `diag serve`: waitress, guarded against clients that hold
connections without finishing their requests (slowloris).

waitress keeps a connection as long as a byte arrives within `channel_timeout`, so a
client that trickles one byte a minute holds a slot for ever, and about 100 such
connections (its default `connection_limit`) shut everyone else out: agents' ingest
included. Here a request must be whole within fixed deadlines counted from its first
byte (a trickle cannot extend them), one client address holds at most PER_PEER
connections (its oldest unfinished one makes room for a new one), and the limit is
far above waitress's default.
"""

from __future__ import annotations

import logging
import resource
import time
import types
import warnings

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

log = logging.getLogger(__name__)

# Headers are a few hundred bytes: any client sends them in well under a second.
HEADER_DEADLINE_S = 10.0
# The whole request, body included: an agent's largest batch (20,000 samples, a few MiB)
# over a slow link still fits.
REQUEST_DEADLINE_S = 60.0
# Unfinished requests one address may hold at once. Agents behind one NAT share an
# address, each with one connection at a time; only half-read requests count.
PER_PEER = 256
CONNECTION_LIMIT = 4000
# Idle keep-alive connections: an agent sends every 10 s by default, and reconnects.
IDLE_TIMEOUT_S = 30
# Descriptors kept for the databases, the collectors' reads and remote commands.
FD_HEADROOM = 256


class GuardedChannel(HTTPChannel):
    """A channel whose unfinished request has a deadline from its first byte."""

    # time.monotonic() when the request being read began (accept, or its first byte
    # after the previous one); None while no request is being read.
    started: float | None = None

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map=map)
        self.started = time.monotonic()  # a connection that sends nothing is unfinished too
        self.peer = addr[0] if isinstance(addr, tuple) and addr else str(addr)
        _make_room(self)

    def received(self, data):
        before = self.request
        if data and self.started is None and before is None:
            self.started = time.monotonic()
        result = super().received(data)
        with self.requests_lock:
            if self.request is None:  # every request read so far is complete
                self.started = None
            elif before is not None and self.request is not before:
                self.started = time.monotonic()  # a pipelined request began in this read
        return result

    def overdue(self, now: float) -> bool:
        started = self.started
        if started is None or self.will_close:
            return False
        request = self.request
        headers_done = request is not None and request.headers_finished
        return now - started > (REQUEST_DEADLINE_S if headers_done else HEADER_DEADLINE_S)


def _make_room(new: GuardedChannel) -> None:
    """Keep one address under PER_PEER unfinished requests: evict its oldest unfinished one.

    Only connections with a request half-read count: a busy client (a load test, a reverse
    proxy or a NAT that puts many users behind one address) holds many connections whose
    requests arrive whole, and closing one of those, or the new one, would reset a
    legitimate request. A slowloris client's connections are all unfinished. The new
    connection is unfinished too (nothing read yet), so it is never the one evicted."""
    unfinished = [c for c in list(new._map.values())
                  if isinstance(c, GuardedChannel) and c.peer == new.peer and not c.will_close
                  and c.started is not None]
    if len(unfinished) <= PER_PEER:
        return
    victim = min((c for c in unfinished if c is not new), key=lambda c: c.started)
    victim.will_close = True
    log.debug("closing a connection of %s: more than %d unfinished requests", new.peer, PER_PEER)


def _maintenance(self, now: float) -> None:
    BaseWSGIServer.maintenance(self, now)
    mono = time.monotonic()
    for channel in list(self.active_channels.values()):
        if isinstance(channel, GuardedChannel) and channel.overdue(mono):
            channel.will_close = True


def _connection_limit() -> int:
    """As many connections as the descriptor limit allows, raised to its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = CONNECTION_LIMIT + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return CONNECTION_LIMIT
    return max(100, min(CONNECTION_LIMIT, soft - FD_HEADROOM))


def create(app, host: str, port: int):
    """A waitress server for `app`, not yet running (call `.run()` in a thread)."""
    # recv_bytes: request bodies arrive in one read instead of 8 KiB pieces (an agent's
    # batch is tens of KiB). send_bytes: a worker thread leaves a response of up to
    # 256 KiB to the event loop to send instead of sending it itself; eight workers in
    # send() at once, each then waiting its turn for the GIL, made /metrics at 64
    # connections 3,600 req/s with a p99 of 98 ms, against 8,200-8,900 and 12-14 ms
    # (bench/http_service.py). waitress calls send_bytes deprecated but has no other knob
    # for this; pyproject.toml keeps waitress below 4 so its removal cannot surprise us.
    # asyncore_use_poll: select() cannot watch a descriptor above 1023, and the
    # connection limit is above that. cleanup_interval: deadlines are checked each second.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        server = create_server(app, host=host, port=port, threads=8, ident="diag", recv_bytes=256 * 1024,
                               send_bytes=256 * 1024, connection_limit=_connection_limit(),
                               asyncore_use_poll=True, cleanup_interval=1, channel_timeout=IDLE_TIMEOUT_S)
    # With several addresses (a host name that resolves to two) create_server returns a
    # holder of one server per socket; each accepts into our channel and runs our checks.
    listeners = [server] if isinstance(server, BaseWSGIServer) else [
        s for s in server.map.values() if isinstance(s, BaseWSGIServer)]
    for s in listeners:
        s.channel_class = GuardedChannel
        s.maintenance = types.MethodType(_maintenance, s)  # waitress has no hook for this
    return server
