"""Email over SMTP: plain, STARTTLS or implicit TLS, with optional login.

The Message-ID is derived from the idempotency key, so a resent copy can be recognised
(and is dropped by mail systems that deduplicate on it)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from diag.alerting.notifiers import DeliveryError


def _context(smtp: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(smtp.ca_file) if smtp.ca_file else None)
    if not smtp.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send(channel: dict[str, Any], payload: dict[str, str], key: str, settings: Any) -> str:
    smtp = settings.smtp
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = channel["address"]
    msg["Subject"] = payload["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{key}@diag>"
    msg["X-Diag-Idempotency-Key"] = key
    msg.set_content(payload["text"])
    try:
        if smtp.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=_context(smtp))
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.security == "starttls":
                client.starttls(context=_context(smtp))
            if smtp.username:
                client.login(smtp.username, smtp.password or "")
            refused = client.send_message(msg)
    except smtplib.SMTPRecipientsRefused as e:
        raise DeliveryError(f"recipient refused: {e.recipients}", permanent=True) from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(f"{type(e).__name__}: {e}") from None
    if refused:
        raise DeliveryError(f"recipient refused: {refused}", permanent=True)
    return f"accepted by {smtp.host}:{smtp.port}"
