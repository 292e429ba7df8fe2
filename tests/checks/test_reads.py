"""checks/reads.py lists what each check reads; evaluating every check proves the list whole."""

from __future__ import annotations

from typing import Any

import pytest

from checks.catalogue import ALL
from checks.reads import READS
from collectors import facts
from collectors.roots import Roots
from diag import catalogue
from diag.events import TYPES as EVENT_TYPES
from tests.checks.context import TableContext, facts_snapshot, fill_healthy

NOW = 1_800_000_000.0


class FactsSeen(dict):
    """A facts snapshot that remembers which parts were read (its time and error map are no part)."""

    def __init__(self, parts: dict[str, Any], seen: set[str]) -> None:
        super().__init__(parts)
        self.seen = seen

    def _saw(self, key: str) -> None:
        if key not in ("taken_at", "errors"):
            self.seen.add(f"facts:{key}")

    def __getitem__(self, key: str) -> Any:
        self._saw(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._saw(key)
        return super().get(key, default)


class Recording(TableContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: set[str] = set()

    def series(self, metric: str, *args: Any, **kwargs: Any):
        self.seen.add(metric)
        return super().series(metric, *args, **kwargs)

    def latest(self, metric: str, *args: Any, **kwargs: Any):
        self.seen.add(metric)
        return super().latest(metric, *args, **kwargs)

    def events(self, types=None, *args: Any, **kwargs: Any):
        self.seen.update(f"event:{t}" for t in types or ())
        return super().events(types, *args, **kwargs)

    def facts(self):
        f = super().facts()
        return None if f is None else FactsSeen(f, self.seen)


def contexts() -> list[Recording]:
    empty = Recording(NOW)
    healthy = fill_healthy(Recording(NOW))
    only_facts = Recording(NOW).set_facts(facts_snapshot(NOW - 60), taken_at=NOW - 60)
    return [empty, healthy, only_facts]


def test_every_check_has_its_reads_listed_and_nothing_else():
    assert set(READS) == {c.id for c in ALL}


@pytest.mark.parametrize("check", ALL, ids=lambda c: c.id)
def test_a_check_reads_only_what_it_lists(check):
    seen: set[str] = set()
    for ctx in contexts():
        check.evaluate(ctx, check)
        seen |= ctx.seen
    assert seen <= set(READS[check.id]), sorted(seen - set(READS[check.id]))


def test_what_checks_read_exists():
    snapshot = facts.snapshot(Roots(), NOW)  # this machine's, with every part
    for check_id, reads in READS.items():
        for r in reads:
            kind, _, name = r.rpartition(":")
            if kind == "event":
                assert name in EVENT_TYPES, (check_id, r)
            elif kind == "facts":
                assert name in snapshot, (check_id, r)
            else:
                assert name in catalogue.BY_NAME, (check_id, r)
