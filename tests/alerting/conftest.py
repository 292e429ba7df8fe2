"""Fixtures of the alerting tests (the helpers are in alerting_helpers.py)."""

from tests.alerting.alerting_helpers import alertmanager, receiver, svc  # noqa: F401 - pytest finds fixtures by name
