"""The pure rules of a metric condition: which periods breach, what the last few periods
say (fire, pending, ok, keep), and how an alert's state moves on that verdict.

Periods are aligned buckets of `period` seconds; the open, incomplete bucket never
counts. Each bucket is B (breaching), O (not breaching) or M (no data). How M counts
is the policy's `missing_data`, after CloudWatch's TreatMissingData:

- `breaching` (CloudWatch `breaching`): M counts as B.
- `ok` (`notBreaching`): M counts as O.
- `insufficient` (`missing`): M is neither. A run with an M in it cannot fire; the
  newest bucket that has data says pending or ok; a window of only M is "insufficient":
  a firing alert resolves (the notice says the data stopped), a pending one clears.
- `keep` (`ignore`): M is skipped, looking back up to 2N periods for N that have data;
  a window of only M keeps the current state.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

FIRE, PENDING, OK, KEEP, INSUFFICIENT = "fire", "pending", "ok", "keep", "insufficient"

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


def classify(values: Sequence[float | None], comparison: str, threshold: float) -> list[str]:
    op = OPS[comparison]
    return ["M" if v is None else ("B" if op(v, threshold) else "O") for v in values]


def decide(classes: Sequence[str], n: int, mode: str) -> str:
    """The verdict on buckets oldest-first (at least n of them; `keep` may use 2n)."""
    if mode == "breaching":
        classes = ["B" if c == "M" else c for c in classes]
    elif mode == "ok":
        classes = ["O" if c == "M" else c for c in classes]
    window = list(classes[-n:])
    if mode == "keep":
        if all(c == "M" for c in window):
            return KEEP
        present = [c for c in classes if c != "M"][-n:]
        if len(present) == n and all(c == "B" for c in present):
            return FIRE
        return PENDING if present[-1] == "B" else OK
    if all(c == "B" for c in window):
        return FIRE
    present = [c for c in window if c != "M"]
    if not present:
        return INSUFFICIENT
    return PENDING if present[-1] == "B" else OK


def combine(verdicts: Sequence[str]) -> str:
    """`match: all`: fire only when every condition would fire."""
    if all(v == FIRE for v in verdicts):
        return FIRE
    for v in (OK, INSUFFICIENT, KEEP):
        if v in verdicts:
            return v
    return PENDING


@dataclass(frozen=True, slots=True)
class Step:
    """What one verdict does to an alert: its new state and the notice to send, if any."""

    state: str
    notice: str | None  # "firing", "repeat", "resolved" or None
    new_episode: bool = False


def transition(state: str | None, verdict: str, *, last_notified_at: float | None, silence: float,
               now: float, notify_recovery: bool, notified_this_episode: bool) -> Step | None:
    """None means nothing changes. `state` None is an alert never seen (ok)."""
    state = state or "ok"
    if verdict == KEEP:
        return None
    if verdict == FIRE:
        if state != "firing":
            return Step("firing", "firing", new_episode=state in ("ok", "resolved"))
        if last_notified_at is None or now - last_notified_at >= silence:
            return Step("firing", "repeat" if notified_this_episode else "firing")
        return None
    if verdict == PENDING:
        if state in ("ok", "resolved"):
            return Step("pending", None, new_episode=True)
        return None  # pending stays pending; firing is not undone by a single breaching period
    # OK or INSUFFICIENT
    if state == "firing":
        return Step("resolved", "resolved" if notify_recovery and notified_this_episode else None)
    if state == "pending":
        return Step("ok", None)
    return None
