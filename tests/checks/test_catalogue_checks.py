"""The catalogue against PRODUCT.md's table, and every check on a healthy host.

The cost of a run is measured by bench/diagnose.py, not here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checks import catalogue
from checks.base import STATUSES
from tests.checks.context import TableContext, fill_healthy

PRODUCT = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "PRODUCT.md"


# issue -> the (id, category, severity) rows it added to the catalogue beyond PRODUCT.md's table
BEYOND_PRODUCT: dict[str, tuple[tuple[str, str, str], ...]] = {
    "21: containers and cgroups": (("performance.container_memory", "performance", "critical"),),
    "21: systemd units": (("state.failed_units", "state", "critical"),),
    "21: sensors and hardware": (("hardware.raid", "hardware", "critical"),
                                 ("hardware.memory_errors", "hardware", "critical"),
                                 ("hardware.throttling", "hardware", "non_critical"),
                                 ("hardware.temperature", "hardware", "critical")),
    "20: GPU metrics": (("hardware.gpu_memory", "hardware", "non_critical"),
                        ("hardware.gpu_temperature", "hardware", "critical"),
                        ("hardware.gpu_ecc", "hardware", "critical"),
                        ("hardware.gpu_xid", "hardware", "critical")),
    "20: the seed's instance expiry and account arrears rows": (("network.instance_expired", "network", "critical"),
                                                               ("network.account_arrears", "network", "critical")),
}


def product_rows() -> list[tuple[str, str, str]]:
    """(id, category, severity) of each row of PRODUCT.md's "Self-diagnosis checks" table."""
    text = PRODUCT.read_text(encoding="utf-8")
    section = text.split("## Self-diagnosis checks", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows.append((cells[0].strip("`"), cells[1], cells[4]))
    return rows


def test_catalogue_matches_the_product_table():
    if not PRODUCT.exists():
        pytest.skip(f"{PRODUCT} is not here to compare with")
    rows = product_rows()
    assert len(rows) >= 30
    product_ids = {r[0] for r in rows}
    assert [(c.id, c.category, c.severity) for c in catalogue.ALL if c.id in product_ids] == rows
    # Checks that issues added after PRODUCT.md's table (the spec is read-only here): each
    # is named, so a check can still neither appear nor vanish unnoticed.
    extra = {(c.id, c.category, c.severity) for c in catalogue.ALL if c.id not in product_ids}
    assert extra == {row for rows_ in BEYOND_PRODUCT.values() for row in rows_}


def test_lookup():
    assert catalogue.get("storage.readonly") is catalogue.BY_ID["storage.readonly"]
    with pytest.raises(KeyError, match="no.such"):
        catalogue.get("no.such")


def test_checks_are_data():
    for c in catalogue.ALL:
        json.dumps(c.to_json())
        assert c.recommendation and c.description and c.lookback == 12 * 3600
        assert all(isinstance(v, (int, float)) for v in c.thresholds.values())


def test_a_healthy_host_passes_everything_applicable():
    ctx = fill_healthy(TableContext(monitoring_since=TableContext().now - 30 * 86400))
    for c in catalogue.ALL:
        r = c.evaluate(ctx, c)
        json.dumps(r.evidence, allow_nan=False)
        assert r.status in STATUSES
        expected = "not_applicable" if c.id in ("network.ddos_blackhole", "network.public_ip_arrears",
                                                "network.instance_expired", "network.account_arrears") else "ok"
        assert r.status == expected, (c.id, r.message)


def test_the_events_checks_raise_are_known_event_types_raised_only_when_critical():
    from diag.events import TYPES

    raising = {c.id: c.raises.type for c in catalogue.ALL if c.raises}
    assert raising == {"storage.io_hang": "Disk.IOHang", "storage.disk_usage": "Disk.Full",
                       "storage.inode_usage": "Disk.Full", "storage.readonly": "Disk.ReadOnly"}
    assert set(raising.values()) <= set(TYPES)
    from checks.base import CheckResult

    full = catalogue.get("storage.disk_usage")
    assert full.raises.events(full.id, CheckResult("warning", "/ at 95 %")) == []
    [e] = full.raises.events(full.id, CheckResult("critical", "/ at 99 %"))
    assert (e.type, e.message, e.fold_key, e.source) == ("Disk.Full", "/ at 99 %", "storage.disk_usage",
                                                         "storage.disk_usage")
