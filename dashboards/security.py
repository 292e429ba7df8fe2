"""The dashboard's session: a signing secret kept in the data dir, a CSRF token per session,
and the login that admits a browser to the pages that change things when an admin token
is configured.

The session cookie is HttpOnly, SameSite=Strict and Secure. Browsers treat
http://127.0.0.1 and http://localhost as secure contexts and keep Secure cookies from
them (the browser tests log in over http://127.0.0.1), so Secure costs nothing on the
default loopback address; on any other address the service needs TLS in front of it
for a browser login, which an admin token crossing a network wants anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request, session

SECRET_FILE = "dashboard-secret"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def load_secret(data_dir: Path) -> bytes:
    """The signing secret: made once, kept with mode 0600, so sessions survive a restart."""
    path = Path(data_dir) / SECRET_FILE
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # O_EXCL on a fresh name, mode 0600 from birth: the secret is never readable by others.
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return secret


def configure(app: Flask, data_dir: Path) -> None:
    app.secret_key = load_secret(data_dir)
    app.config.update(SESSION_COOKIE_NAME="diag_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=True,
                      PERMANENT_SESSION_LIFETIME=12 * 3600)


def _config() -> Any:
    return current_app.extensions["diag"]["parts"].config


def token_required() -> bool:
    return bool(_config().token)


def _fingerprint(token: str) -> str:
    """What the session keeps: a keyed hash of the token, never the token itself, so a new
    token logs every browser out."""
    return hmac.new(current_app.secret_key, token.encode(), hashlib.sha256).hexdigest()


def logged_in() -> bool:
    token = _config().token
    if not token:
        return True
    got = session.get("auth")
    return isinstance(got, str) and hmac.compare_digest(got, _fingerprint(token))


def log_in(token: str) -> bool:
    expected = _config().token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return False
    session.clear()  # a new session id and CSRF token at each login (no fixation)
    session.permanent = True
    session["auth"] = _fingerprint(expected)
    csrf_token()
    return True


def log_out() -> None:
    session.clear()


def csrf_token() -> str:
    tok = session.get("csrf")
    if not isinstance(tok, str) or len(tok) < 32:
        tok = session["csrf"] = secrets.token_urlsafe(32)
    return tok


def _same_origin() -> bool:
    """A browser names the page a request comes from; another origin is refused outright."""
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if not origin or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def check_csrf() -> None:
    """Refuse a mutating request without this session's token (form field or header)."""
    if request.method not in MUTATING:
        return
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    want = session.get("csrf")
    if not (isinstance(want, str) and sent and hmac.compare_digest(sent.encode(), want.encode())):
        abort(403, "the form has expired or did not come from this dashboard: reload the page and try again")
    if not _same_origin():
        abort(403, "this request came from another site")


def secure_transport() -> bool:
    """Whether the browser will keep a Secure cookie from here (TLS, or a loopback address)."""
    if request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https":
        return True
    host = request.host.rsplit(":", 1)[0].strip("[]") if not request.host.startswith("[") \
        else request.host[1:].split("]")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_next(target: str | None) -> str:
    """Only a path on this site: a login must not become an open redirect. Browsers drop tabs
    and newlines from a URL (`/\t/evil.com` is `//evil.com` to them) and read `\\` as `/`,
    so any whitespace, control character or backslash refuses the target outright."""
    if not target or not target.startswith("/") or len(target) > 2048:
        return "/"
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return "/"
    return target


def refuse_unless_logged_in() -> Any:
    """With reads protected, a page needs a login: a redirect to it for a browser, a 401 for
    what a script fetches (the charts' JSON)."""
    if logged_in():
        return None
    wants_html = request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
    if not wants_html or request.path.endswith("/charts"):
        from flask import jsonify

        return jsonify({"error": {"code": "Unauthorized", "message": "log in first (reads need the admin token)"}}), 401
    from flask import redirect, url_for

    return redirect(url_for("dash.login", next=safe_next(request.full_path.rstrip("?"))), 303)
