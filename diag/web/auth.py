"""Bearer tokens: compared in constant time, required only when configured."""

from __future__ import annotations

import hmac

from flask import request

from diag.web.errors import ApiError
from diag.web.parts import parts


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require(*kinds: str) -> None:
    """Refuse the request unless it carries one of the configured tokens of these kinds
    (`token` = admin, `ingest_token` = push data). With none configured, allow it."""
    cfg = parts().config
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


# -- fleet: agent tokens bound to one instance, the shared ingest token, protected reads --

def _matches(got: str, secret: str | None) -> bool:
    return bool(secret) and hmac.compare_digest(got.encode(), secret.encode())


def _agent_instance(got: str) -> str | None:
    return parts().fleet.instance_of(got)


def may_push(instance_id: str | None) -> None:
    """Pushing data: the admin or ingest token for any instance, an agent token only for its
    own. `instance_id` None checks the token alone (before the body is read), so a bad
    token is a 401 whatever the body says; then it is called again with the instance."""
    cfg = parts().config
    got = _bearer()
    if got is not None:
        if _matches(got, cfg.token) or _matches(got, cfg.ingest_token):
            return
        bound = _agent_instance(got)
        if bound is not None:
            if instance_id is not None and bound != instance_id:
                raise ApiError(403, f"this agent token pushes only for instance {bound}")
            return
    if cfg.token or cfg.ingest_token:
        raise ApiError(401, "a valid bearer token is required (Authorization: Bearer <token>)")


def shared_ingest_token() -> bool:
    """Whether the request pushes with the shared ingest token (and not the admin's)."""
    cfg = parts().config
    got = _bearer()
    return got is not None and not _matches(got, cfg.token) and _matches(got, cfg.ingest_token)


def agent_for(instance_id: str) -> None:
    """An agent's own endpoints (`/api/v1/agents/{id}/tasks`...): always a token, and only
    the agent token bound to `instance_id` (or the admin token) may use them."""
    cfg = parts().config
    got = _bearer()
    if got is None:
        raise ApiError(401, "an agent token is required (Authorization: Bearer <token>)")
    if _matches(got, cfg.token):
        return
    bound = _agent_instance(got)
    if bound is None:
        if _matches(got, cfg.ingest_token):
            raise ApiError(403, "the ingest token may only push data")
        raise ApiError(401, "a valid agent token is required")
    if bound != instance_id:
        raise ApiError(403, f"this agent token belongs to instance {bound}")


# Reads that stay open with protect_reads: liveness, the agents' own endpoints (checked above),
# the login page and the static files it needs.
_OPEN_READS = ("/healthz", "/api/v1/agents/")
_OPEN_PAGES = ("/login", "/dashboard-static/")
_PROMETHEUS = "/prometheus/"


def install(app) -> None:
    """With reads protected (config.reads_protected), every read needs the admin token: API
    reads and /metrics as a bearer token; the dashboard's pages a login session or the token."""
    from diag.config import reads_protected

    @app.before_request
    def _protect_reads():
        cfg = parts().config
        path = request.path
        # The Prometheus API reads by POST too (a long query in a form body, as Grafana sends it).
        prometheus = path.startswith(_PROMETHEUS)
        if (request.method not in ("GET", "HEAD") and not prometheus) or not reads_protected(cfg):
            return None
        if path.startswith(_OPEN_READS):
            return None
        got = _bearer()
        if got is not None and _matches(got, cfg.token):
            return None
        if path.startswith("/api/") or path == "/metrics" or prometheus:
            if got is not None and (_matches(got, cfg.ingest_token) or _agent_instance(got) is not None):
                raise ApiError(403, "reads need the admin token (protect_reads is on)")
            raise ApiError(401, "reads need the admin token (protect_reads is on)")
        if path == "/login" or path.startswith(_OPEN_PAGES[1]):
            return None
        from dashboards import security

        return security.refuse_unless_logged_in()
