"""The whole registry over a partial /proc tree: a missing file costs only the readings
made from it (issue 14), as node_exporter keeps conntrack and file handles apart from
the TCP states."""

from __future__ import annotations

import shutil
from pathlib import Path

from collectors import registry
from collectors.filesystem import read_mounts
from collectors.runner import CollectionCycle
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag.model import Batch
from tests.conftest import FIXTURES, HOST_T0

# What a container or a kernel without IPv6 may lack, and a partial capture too.
MISSING = ("net/tcp", "net/tcp6", "self/mountinfo")


def two_cycles(top: Path, missing: tuple[str, ...] = ()) -> tuple[Batch, CollectionCycle]:
    """Every collector over the fixture host at t0 and then t1 (so rates exist), with
    `missing` files absent from /proc both times."""
    settings = CollectorSettings(raw_counters=True)
    cycle = None
    for n, t in enumerate(("t0", "t1")):
        shutil.copytree(FIXTURES / "host" / t, top, dirs_exist_ok=True)
        for path in missing:
            (top / "proc" / path).unlink()
        if cycle is None:
            (top / "dev").mkdir()
            (top / "dev" / "kmsg").write_bytes(b"")
            # statvfs of each mount answers under the tree's root, as on a real host.
            for m in read_mounts(HOST_T0):
                (top / m.mountpoint.lstrip("/")).mkdir(parents=True, exist_ok=True)
            cycle = CollectionCycle(registry.build(Roots.under(top), settings))
        batch = cycle.run(1000.0 + 10 * n)
    return batch, cycle


def metric_names(b: Batch) -> set[str]:
    return {s.metric for s in b.samples + b.totals}


def test_a_partial_proc_tree_loses_only_the_readings_of_its_missing_files(tmp_path: Path):
    whole, _ = two_cycles(tmp_path / "whole")
    partial, cycle = two_cycles(tmp_path / "partial", MISSING)

    from_missing = {"tcp_connections"} | {m for m in metric_names(whole) if m.startswith("fs_")}
    assert {"tcp_connections", "fs_usage"} <= from_missing  # the full tree really had them
    assert metric_names(partial) == metric_names(whole) - from_missing
    assert {"conntrack_usage", "file_handles_usage"} <= metric_names(partial)
    # raw counters come from other files: every one is still there, conntrack and file-nr too
    assert partial.counters.keys() == whole.counters.keys()
    assert partial.processes == whole.processes
    # both cycles counted, each against the collector that lost a file
    assert cycle.errors[("connections", "net/tcp:FileNotFoundError")] == 2
    assert {c for c, _ in cycle.errors} == {"connections", "filesystem"}
