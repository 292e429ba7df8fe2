"""When a reading is too old to stand for "now": one rule for checks, pages and health."""

from __future__ import annotations

# A reading missed this many collections in a row: the source is gone or stopped, not late.
MISSED_INTERVALS = 3

# Floors on top of the rule, by reader. A series judged against the newest point of its
# metric, which may come from a machine collecting less often, is gone only after five
# minutes (an unmounted filesystem, a removed disk, a stopped container).
SERIES_FLOOR = 300.0
NOW_STRIP_FLOOR = 60.0  # the instance page's "Now" strip: dashes soon, so a silent machine shows
HEALTHZ_FLOOR = 30.0  # /healthz: a service that has not collected for this long is failing


def stale_after(interval: float, at_least: float = 0.0) -> float:
    """Seconds after which a reading taken every `interval` seconds is stale (never sooner
    than `at_least`)."""
    return max(float(at_least), MISSED_INTERVALS * float(interval))
