"""Chat group robots: DingTalk, WeCom (企业微信), Slack incoming webhooks and Feishu/Lark.

The outbox stores each robot's message body (payloads.py); what depends on the moment
of sending is added here, on every attempt: the DingTalk and Feishu signatures carry a
timestamp the vendor refuses once it is about an hour old, so a retry after a long
outage must be signed afresh, never replayed.

The robots answer HTTP 200 even when they refuse a message, with the verdict in the
body: DingTalk and WeCom `{"errcode": 0, "errmsg": "ok"}`, Feishu `{"code": 0}` (older
bots `{"StatusCode": 0}`), Slack the text `ok`. A non-zero code is a failure the outbox
retries (a robot over its rate limit, 20 messages a minute for DingTalk, says so this
way); an HTTP 4xx stays permanent as for any webhook.

The robot's URL is its credential (the token is in its path or query) and the secret
signs: neither is ever put in an error, a log line or the delivery history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import Any

from diag.alerting.notifiers import DeliveryError
from diag.alerting.notifiers.webhook import TIMEOUT, post_json


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's 加签: base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")), URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's 签名校验: base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b""))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _with_query(url: str, extra: str) -> str:
    return url + ("&" if "?" in url else "?") + extra


def _verdict(vendor: str, text: str, code_keys: tuple[str, ...], message_keys: tuple[str, ...]) -> str:
    try:
        answer = json.loads(text)
    except ValueError:
        raise DeliveryError(f"{vendor} answered something that is not JSON: {text[:120]!r}") from None
    if not isinstance(answer, dict):
        raise DeliveryError(f"{vendor} answered {text[:120]!r}")
    code = next((answer[k] for k in code_keys if k in answer), None)
    msg = next((str(answer[k]) for k in message_keys if k in answer), "")
    if code is None:
        raise DeliveryError(f"{vendor} answered without {code_keys[0]}: {text[:120]!r}")
    if code != 0:
        raise DeliveryError(f"{vendor} refused the message: {code_keys[0]} {code} {msg[:200]}".rstrip())
    return f"HTTP 200, {code_keys[0]} 0"


def scrub(text: str, channel: dict[str, Any]) -> str:
    """`text` without the robot's token or secret: http.client quotes the request target in
    some of its errors ("URL can't contain control characters. '/robot/send?access_token=...'")."""
    url = channel["url"]
    try:
        u = urllib.parse.urlsplit(url)
        parts = [urllib.parse.urlunsplit(("", "", u.path, u.query, "")), u.query, u.path]
    except ValueError:  # not a URL urlsplit reads: all of it after the scheme is masked
        parts = [url.partition("://")[2]]
    for secret in (url, *parts, channel.get("secret") or ""):
        if len(secret) > 1:
            text = text.replace(secret, "***")
    return text


def send(channel: dict[str, Any], payload: Any, key: str, settings: Any, deadline: float = TIMEOUT) -> str:
    kind, url, secret = channel["type"], channel["url"], channel.get("secret")
    body = payload
    if kind == "dingtalk" and secret:
        ts = int(time.time() * 1000)
        url = _with_query(url, f"timestamp={ts}&sign={dingtalk_sign(secret, ts)}")
    if kind == "feishu" and secret:
        ts = int(time.time())
        body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **payload}
    try:
        r = post_json(url, body, key, channel.get("headers"), timeout=deadline, read_body=True)
    except DeliveryError as e:
        raise DeliveryError(scrub(str(e), channel), e.permanent) from None
    except Exception as e:  # noqa: BLE001 - anything else would be logged with its traceback, token and all
        raise DeliveryError(scrub(f"{type(e).__name__}: {e}", channel)) from None
    if kind in ("dingtalk", "wecom"):
        return _verdict("DingTalk" if kind == "dingtalk" else "WeCom", r.text, ("errcode",), ("errmsg",))
    if kind == "feishu":
        return _verdict("Feishu", r.text, ("code", "StatusCode"), ("msg", "StatusMessage"))
    # Slack answers "ok"; Slack-compatible receivers (Mattermost, Rocket.Chat) answer other bodies, all 2xx.
    return f"HTTP {r.status_code}" + (f", {r.text.strip()[:40]}" if r.text.strip() else "")
