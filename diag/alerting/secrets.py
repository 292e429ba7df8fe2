"""Notifier secrets are write-only: no route or page shows them to anyone, the admin included.

A webhook URL often is its own credential (Slack, DingTalk, WeCom and Feishu put the token
in the path or the query), and channel headers carry `Authorization`. What a route shows
is the scheme and host, with `***` for the rest, so a user still sees where alerts go.
A contact read back and sent again unchanged keeps the stored secrets (`restore`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from diag.errors import ApiError

MASK = "***"
_SECRET_FIELDS = ("secret", "password", "token")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# requests names the path of the URL it failed on: "Max retries exceeded with url: /hook?key=..."
_WITH_URL = re.compile(r"(with url: )\S+")


def mask_url(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    netloc = ("[" + host + "]" if ":" in host else host) + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    # urlsplit drops tabs and newlines, so its netloc may not be in the URL as given: mask the rest then.
    rest = url.split(parts.netloc, 1)[1] if parts.netloc in url else "/" + MASK
    return f"{parts.scheme}://{netloc}" + ("/" + MASK if rest not in ("", "/") else rest)


def mask_channel(channel: Any) -> Any:
    if not isinstance(channel, dict):
        return channel
    out = dict(channel)
    if "url" in out:
        out["url"] = mask_url(out["url"])
    if isinstance(out.get("headers"), dict):
        out["headers"] = {k: MASK for k in out["headers"]}
    for key in _SECRET_FIELDS:
        if out.get(key):
            out[key] = MASK
    return out


def mask_contact(contact: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(contact.get("channels"), list):
        return contact
    return {**contact, "channels": [mask_channel(c) for c in contact["channels"]]}


def mask_text(text: Any) -> Any:
    """Free text that may quote a URL (a delivery's channel and error detail)."""
    if not isinstance(text, str):
        return text
    return _WITH_URL.sub(lambda m: m.group(1) + MASK, _URL.sub(lambda m: mask_url(m.group(0)), text))


def mask_delivery(row: dict[str, Any]) -> dict[str, Any]:
    """A delivery's channel and error detail masked: a history row, or a contact test's result."""
    return {**row, "channel": mask_text(row.get("channel")), "detail": mask_text(row.get("detail"))}


def mask_preview(result: dict[str, Any]) -> dict[str, Any]:
    """A policy test's answer: each notification names the channel it would go to."""
    out = dict(result)
    out["results"] = [{**r, "notifications": [{**n, "channel": mask_channel(n.get("channel"))}
                                              for n in r.get("notifications", [])]}
                      for r in result.get("results", [])]
    return out


def restore(body: Any, stored: dict[str, Any] | None) -> Any:
    """A contact body with the masked values a GET showed replaced by the stored secrets.

    A masked value without a stored one to stand for is refused: saving `***` as a URL
    or a header would break delivery without a word."""
    if not isinstance(body, dict) or not isinstance(body.get("channels"), list):
        return body
    old = [c for c in (stored or {}).get("channels", []) if isinstance(c, dict)]
    channels = []
    for i, ch in enumerate(body["channels"]):
        if not isinstance(ch, dict):
            channels.append(ch)
            continue
        ch = dict(ch)
        match = _matching(ch, old, i)
        url = ch.get("url")
        if isinstance(url, str) and MASK in url:
            if match is None or mask_url(match.get("url")) != url:
                raise ApiError(422, f"{MASK} stands for a stored secret this contact does not have: send the "
                                    "whole URL", f"channels[{i}].url")
            ch["url"] = match["url"]
        headers = ch.get("headers")
        if isinstance(headers, dict):
            kept = (match or {}).get("headers") or {}
            for k, v in headers.items():
                if v == MASK:
                    if k not in kept:
                        raise ApiError(422, f"{MASK} stands for a stored value this channel does not have",
                                       f"channels[{i}].headers.{k}")
                    headers = {**headers, k: kept[k]}
            ch["headers"] = headers
        for key in _SECRET_FIELDS:
            if ch.get(key) == MASK:
                if not (match or {}).get(key):
                    raise ApiError(422, f"{MASK} stands for a stored value this channel does not have",
                                   f"channels[{i}].{key}")
                ch[key] = match[key]
        channels.append(ch)
    return {**body, "channels": channels}


def _matching(channel: dict[str, Any], old: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    """The stored channel a sent one stands for: of its type, with the URL (or masked URL) it
    shows, the one at the same place first. Only the same URL keeps stored headers: a new URL
    with `***` headers would send the stored Authorization to wherever the new URL points."""
    url = channel.get("url")

    def same(c: dict[str, Any]) -> bool:
        return c.get("type") == channel.get("type") and (url is None or url in (c.get("url"), mask_url(c.get("url"))))

    if index < len(old) and same(old[index]):
        return old[index]
    return next((c for c in old if same(c)), None)
