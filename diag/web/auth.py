"""Bearer tokens: compared in constant time, required only when configured."""

from __future__ import annotations

import hmac

from flask import current_app, request

from diag.web.errors import ApiError


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(*kinds: str) -> None:
    """Refuse the request unless it carries one of the configured tokens of these kinds
    (`token` = admin, `ingest_token` = push data). With none configured, allow it."""
    cfg = current_app.extensions["diag"]["service"].config
    wanted = [getattr(cfg, k) for k in kinds if getattr(cfg, k)]
    if cfg.token and "token" not in kinds:
        wanted.append(cfg.token)  # the admin token may do everything
    if not wanted:
        return
    got = _bearer()
    # compare_digest against every candidate, so timing says nothing about which matched
    ok = [hmac.compare_digest(got.encode(), w.encode()) for w in wanted] if got else [False]
    if not any(ok):
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)")
