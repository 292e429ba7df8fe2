"""Defaults of settings that a part also needs without the model: the store's own
Retention (diag/store/types.py) is built in tests and tools with no settings at all.
Plain data, so that reading it loads nothing."""

from __future__ import annotations

DAY = 86400.0

# How long each level of the store is kept, in seconds (spec: raw 48 h; 1m/5m/1h 31 d; 1d 180 d).
RETENTION = {"raw": 2 * DAY, "m1": 31 * DAY, "m5": 31 * DAY, "h1": 31 * DAY, "d1": 180 * DAY}
