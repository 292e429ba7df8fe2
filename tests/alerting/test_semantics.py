"""The pure rules: verdicts on bucket classes (CloudWatch's missing-data cases) and the
state machine. B = breaching period, O = not breaching, M = no data (oldest first)."""

from __future__ import annotations

import pytest

from diag.alerting.semantics import FIRE, INSUFFICIENT, KEEP, OK, PENDING, classify, combine, decide, transition


@pytest.mark.parametrize("classes, n, verdict", [
    ("OBB", 3, PENDING),   # the (N-1)th breaching period: not yet
    ("BBB", 3, FIRE),      # the Nth: fires
    ("BOB", 3, PENDING),   # a break restarts the run
    ("BBO", 3, OK),
    ("B", 1, FIRE),
])
def test_consecutive(classes, n, verdict):
    assert decide(list(classes), n, "insufficient") == verdict


# The data-point rows of CloudWatch's "Configuring how CloudWatch alarms treat missing
# data" table (3 of 3 datapoints), each read with our four treatments (semantics.py): the
# last three periods are the window; `keep` may look back past missing ones.
@pytest.mark.parametrize("classes, insufficient, ok, breaching, keep", [
    ("OMBMB", PENDING, PENDING, FIRE, PENDING),  # 0 - X - X : breaching fills the gaps
    ("OMMMM", INSUFFICIENT, OK, FIRE, KEEP),     # 0 - - - - : no data in the window
    ("MMMMM", INSUFFICIENT, OK, FIRE, KEEP),     # - - - - - : keep retains the state
    ("OBBMB", PENDING, PENDING, FIRE, FIRE),     # 0 X X - X : keep skips the gap: 3 breaching
    ("MMBMM", PENDING, OK, FIRE, PENDING),       # - - X - -
])
def test_missing_data_modes(classes, insufficient, ok, breaching, keep):
    c = list(classes)
    assert decide(c[-3:], 3, "insufficient") == insufficient
    assert decide(c[-3:], 3, "ok") == ok
    assert decide(c[-3:], 3, "breaching") == breaching
    assert decide(c, 3, "keep") == keep


def test_classify_comparisons():
    assert classify([89.9, 90, 91, None], ">=", 90) == ["O", "B", "B", "M"]
    assert classify([1, 2], "<", 2) == ["B", "O"]
    assert classify([1, 2], "!=", 2) == ["B", "O"]
    assert classify([1, 2], "==", 2) == ["O", "B"]


def test_all_needs_every_condition():
    assert combine([FIRE, FIRE]) == FIRE
    assert combine([FIRE, PENDING]) == PENDING
    assert combine([FIRE, OK]) == OK
    assert combine([FIRE, KEEP]) == KEEP


def _t(state, verdict, last=None, now=1000.0, silence=300.0, recovery=True, notified=False):
    return transition(state, verdict, last_notified_at=last, silence=silence, now=now, notify_recovery=recovery,
                      notified_this_episode=notified)


def test_transitions():
    assert _t(None, PENDING).state == "pending" and _t(None, PENDING).notice is None
    assert _t("pending", FIRE).state == "firing" and _t("pending", FIRE).notice == "firing"
    assert _t("firing", FIRE, last=900.0, notified=True) is None            # inside the silence
    assert _t("firing", FIRE, last=700.0, notified=True).notice == "repeat"  # silence over: again
    assert _t("firing", OK, notified=True).notice == "resolved"
    assert _t("firing", OK, notified=True, recovery=False).notice is None
    assert _t("firing", OK, notified=False).notice is None  # nobody heard it fire: no recovery either
    assert _t("firing", KEEP) is None
    assert _t("firing", PENDING) is None
    assert _t("pending", OK).state == "ok"
    assert _t("resolved", PENDING).new_episode
