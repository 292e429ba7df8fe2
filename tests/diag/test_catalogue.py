"""The metric catalogue against PRODUCT.md's table: every metric it names, with its unit,
kind and labels (the processes row is evidence, not a series)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diag import catalogue

PRODUCT = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "PRODUCT.md"
UNITS = {"%": "percent", "bytes": "bytes", "bit/s": "bit/s", "/s": "1/s", "bytes/s": "bytes/s", "ms": "ms",
         "count": "count", "s": "s", "0 or 1": "bool"}


def product_groups() -> list[tuple[list[str], str, set[str]]]:
    """(names, unit as written, label keys) of each `a`, `b`: unit {labels} group of the table."""
    text = PRODUCT.read_text(encoding="utf-8")
    section = text.split("## Metrics (the catalogue)", 1)[1].split("\n## ", 1)[0]
    groups = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[1].startswith("`"):
            continue
        parts = cells[1].split(";")
        for part in parts:
            names = re.findall(r"`([a-z0-9_]+)`", part.split(":", 1)[0])
            rest = part.split(":", 1)[1] if ":" in part else ""
            labels = {k.split("=")[0].strip() for k in re.findall(r"\{([^}]*)\}", rest)[0].split(",")} \
                if "{" in rest else set()
            unit = re.sub(r"\{.*?\}|\(.*?\)", "", rest).split(" of ")[0].strip()
            groups.append((names, unit, labels))
        # A row's trailing {labels} (disk I/O, filesystems) belong to every metric of the row.
        if parts and "{" in parts[-1]:
            last = {k.split("=")[0].strip() for k in re.findall(r"\{([^}]*)\}", parts[-1])[0].split(",")}
            groups[-len(parts):] = [(n, u, lab | last) if cells[0] in ("disk I/O", "filesystems") else (n, u, lab)
                                    for n, u, lab in groups[-len(parts):]]
    return groups


def test_every_product_metric_is_in_the_catalogue_with_its_unit_kind_and_labels():
    if not PRODUCT.exists():
        pytest.skip(f"{PRODUCT} is not here to compare with")
    groups = product_groups()
    named = [n for names, _, _ in groups for n in names]
    assert len(named) >= 50
    missing = [n for n in named if n not in catalogue.BY_NAME]
    assert missing == []
    for names, unit, labels in groups:
        for n in names:
            m = catalogue.BY_NAME[n]
            if unit == "per interval" or unit.startswith("count per interval"):
                assert m.kind == "delta", n
            elif unit in UNITS:
                assert m.unit == UNITS[unit], (n, unit, m.unit)
            assert labels <= set(m.labels), (n, labels, m.labels)
