"""Webhook delivery: one JSON POST, with the notification's idempotency key.

An attempt has one wall-clock deadline for everything after the connection is made
(sending, the status line, headers, any body read), enforced by a timer that shuts the
socket down: a socket timeout alone restarts on every byte, so a receiver trickling a
byte every few seconds held an attempt (and once, all delivery) for ever. The answer is
judged by its status code; at most a few KiB of its body are read, for an error's
detail, so a receiver streaming a huge answer costs nothing.

http.client rather than requests, because the deadline needs the socket before the
headers are read, which requests does not hand out. Proxies from the environment
(http_proxy, https_proxy, no_proxy) are honoured as requests honoured them.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from diag.alerting.notifiers import DeliveryError

TIMEOUT = 10.0  # the whole attempt, seconds
DETAIL_BYTES = 1024  # of an error answer's body, for the delivery history


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    text: str  # the first DETAIL_BYTES of the body of an error answer (or any answer, with read_body); else ""


def _connection(url: urllib.parse.SplitResult, timeout: float) -> tuple[http.client.HTTPConnection, str, dict[str, str]]:
    """The connection to open (direct, or through the environment's proxy), the request
    target and the proxy's headers."""
    https = url.scheme == "https"
    port = url.port or (443 if https else 80)
    target = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        auth: dict[str, str] = {}
        if p.username:
            cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
            auth = {"Proxy-Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}
        if https:  # a CONNECT tunnel, TLS to the receiver inside it
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                p.hostname, p.port or 8080, timeout=timeout, context=ssl.create_default_context())
            conn.set_tunnel(url.hostname, port, headers=auth)
            return conn, target, {}
        conn = http.client.HTTPConnection(p.hostname, p.port or 8080, timeout=timeout)
        return conn, urllib.parse.urlunsplit(("http", f"{url.hostname}:{port}", url.path or "/", url.query, "")), auth
    if https:
        return http.client.HTTPSConnection(url.hostname, port, timeout=timeout,
                                           context=ssl.create_default_context()), target, {}
    return http.client.HTTPConnection(url.hostname, port, timeout=timeout), target, {}


def post_json(url: str, body: Any, key: str, headers: dict[str, str] | None = None,
              timeout: float = TIMEOUT, read_body: bool = False) -> Answer:
    """POST `body` as JSON. `read_body`: keep the start of a success's body too, for the chat
    robots that answer 200 with their verdict inside."""
    try:
        u = urllib.parse.urlsplit(url)
        u.port  # noqa: B018 - raises on a port that is not one
    except ValueError as e:  # "http://[" passes a channel's check and fails here: no retry can help
        raise DeliveryError(f"not a valid URL: {e}", permanent=True) from None
    if u.scheme not in ("http", "https") or not u.hostname:
        raise DeliveryError(f"not an http(s) URL: {url[:200]!r}", permanent=True)
    data = json.dumps(body).encode()
    h = {"Content-Type": "application/json", "User-Agent": "diag-alerting", "Idempotency-Key": key,
         "Content-Length": str(len(data)), "Connection": "close"}
    if u.username:  # credentials in the URL, as requests sent them
        cred = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
        h["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
    h.update(headers or {})
    try:
        conn, target, proxy_headers = _connection(u, timeout)
    except (OSError, ValueError, http.client.InvalidURL) as e:  # a bad port, host or proxy
        raise DeliveryError(f"{type(e).__name__}: {e}", permanent=not isinstance(e, OSError)) from None
    h.update(proxy_headers)
    cut = threading.Event()

    def expire() -> None:
        cut.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read or write at once
            except OSError:
                pass

    # Armed before connecting: a TLS handshake or a proxy's CONNECT answer can trickle too.
    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        conn.connect()
        if cut.is_set():  # the deadline passed while the socket was being made
            raise TimeoutError
        conn.request("POST", target, body=data, headers=h, encode_chunked=False)
        r = conn.getresponse()
        if cut.is_set():  # the shut-down socket reads as an end: what came is not a whole head
            raise TimeoutError
        status, text = r.status, ""
        if status >= 300 or read_body:
            try:
                text = r.read(DETAIL_BYTES).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                text = ""
            if cut.is_set():
                text += " (body cut at the deadline)"
    except (OSError, http.client.HTTPException, ValueError) as e:
        if cut.is_set() or isinstance(e, TimeoutError):
            raise DeliveryError(f"no answer within the {timeout:g} s deadline of an attempt") from None
        raise DeliveryError(f"{type(e).__name__}: {e}") from None
    finally:
        timer.cancel()
        conn.close()  # the rest of the body is never read
    if status >= 300:
        # A 4xx other than timeout/throttling will not succeed on a retry.
        permanent = 400 <= status < 500 and status not in (408, 425, 429)
        raise DeliveryError(f"HTTP {status}: {text[:200]}", permanent=permanent)
    return Answer(status, text)


def send(channel: dict[str, Any], payload: Any, key: str, settings: Any, deadline: float = TIMEOUT) -> str:
    r = post_json(channel["url"], payload, key, channel.get("headers"), timeout=deadline)
    return f"HTTP {r.status_code}"
