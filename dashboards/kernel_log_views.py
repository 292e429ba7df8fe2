"""The Kernel log page of an instance: its system log (the kernel lines kept), filtered by
time and severity, as `GET /api/v1/instances/{id}/kernel-log` serves it."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from flask import render_template, request

from dashboards.data import parse_input_time
from dashboards.blueprint import bp, instance_or_404, parts
from diag.kernel_lines import LEVEL_NAMES, MAX_LIMIT, parse_level

PAGE_LIMIT = 1000


# Times the page can show as dates (datetime's years 1-9999 would allow more; no kernel line
# is from before 1970, and an input beyond either end is refused, not a 500).
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z


def iso(ts: float) -> str:
    """ISO 8601, 24-hour, UTC, to the millisecond: kernel lines come milliseconds apart."""
    if not 0 <= ts <= LATEST:
        return f"{ts:.3f}"  # UNIX seconds, for a time no date can name
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@bp.get("/instances/<instance_id>/kernel-log")
def kernel_log(instance_id: str) -> Any:
    inst = instance_or_404(instance_id)
    now = time.time()
    # Blank inputs are no filter; anything else is checked, and a bad one is named on the page.
    f = {k: request.args.get(k, "").strip() for k in ("since", "until", "level", "limit")}
    args: dict[str, Any] = {"limit": PAGE_LIMIT}
    errors: dict[str, str] = {}
    for name in ("since", "until"):
        if f[name]:
            try:
                t = parse_input_time(f[name], now)
            except (ValueError, IndexError, OverflowError):
                t = math.nan
            if 0 <= t <= LATEST:
                args[name] = t
            else:
                errors[name] = "a time like 2025-01-31T14:00 (UTC), -1h or UNIX seconds, from 1970 to 9999"
    if f["level"]:
        try:
            args["max_level"] = parse_level(f["level"])
        except ValueError as e:
            errors["level"] = str(e)
    if f["limit"]:
        if f["limit"].isascii() and f["limit"].isdigit() and 1 <= int(f["limit"]) <= MAX_LIMIT:
            args["limit"] = int(f["limit"])
        else:
            errors["limit"] = f"a number of lines from 1 to {MAX_LIMIT}"
    lines, more = ([], False) if errors else parts().kernel_log.lines(instance_id, **args)
    for ln in lines:
        ln["iso"] = iso(ln["ts"])
    return render_template("kernel_log.html", inst=inst, lines=lines, more=more, f=f, errors=errors,
                           levels=LEVEL_NAMES, limit=args["limit"], kept=parts().kernel_log,
                           since_iso=iso(args["since"]) if "since" in args else None,
                           until_iso=iso(args["until"]) if "until" in args else None), 400 if errors else 200
