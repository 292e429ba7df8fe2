"""performance.container_memory on constructed series."""

from __future__ import annotations

from checks.containers import MESSAGE_ITEMS
from tests.checks.context import TableContext, evaluate

NOW = 1_800_000_000.0


def test_many_oom_killed_containers_are_named_a_few_in_the_message_and_all_in_the_evidence():
    ctx = TableContext(NOW)
    ctx.add("containers", [NOW - 60, NOW], 12.0)
    names = [f"job-{i}" for i in range(MESSAGE_ITEMS + 3)]
    for i, name in enumerate(names):
        path = f"/system.slice/{name}.service"
        ctx.add("container_memory_usage", [NOW - 60, NOW], 30.0, container=name, runtime="systemd", cgroup=path)
        # one kill each, the later containers the more recent
        ctx.add("container_oom_kills", [NOW - 600 + i, NOW - 60], [1.0, 0.0], container=name, runtime="systemd",
                cgroup=path)
    r = evaluate("performance.container_memory", ctx)
    assert r.status in ("warning", "critical"), r
    assert len(r.evidence["oom_kills"]) == len(names)
    assert r.message.count("OOM-killed") == MESSAGE_ITEMS
    assert r.message.endswith("and 3 more (see the evidence)"), r.message
    assert f"{names[-1]} (systemd)" in r.message and f"{names[0]} (" not in r.message  # latest first
