"""A full disk, exhausted inodes and a read-only remount, through the real service.

These faults show in statvfs and the mount table, not in the kernel log: each service gets
a kernel log of its own, so lines other real-fault tests left in the host's ring buffer
(an ext4 remounted read-only on a loop device since detached) do not colour its findings."""

import os
import subprocess

from tests.conftest import own_kmsg
from tests.faults.helpers import diagnose, health, result, tmpfs, wait_for


def fill(path, chunk=64 * 1024) -> None:
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
        except OSError:
            pass


def test_full_tmpfs_is_critical_impaired_then_clears(serve, tmp_path):
    with tmpfs(tmp_path / "full", "size=1m") as mnt:
        p = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
        fill(mnt / "blob")
        check = lambda: result(diagnose(p.url, "storage.disk_usage"), "storage.disk_usage")  # noqa: E731
        got = wait_for(lambda: (c := check())["status"] == "critical" and c)
        assert got, check()
        assert any(str(mnt) in str(row) for row in got["evidence"].values()), got["evidence"]
        assert str(mnt) in got["recommendation"]
        report = diagnose(p.url)
        assert report["health_status"] == "Impaired"
        me = report["instance_id"]
        assert health(p.url, me)["health_status"] == "Impaired"
        assert "storage.disk_usage" in [r["check_id"] for r in health(p.url, me)["health_reasons"]]
        events = wait_for(lambda: [e for e in _events(p.url) if e["type"] == "Disk.Full"])
        assert events, "no Disk.Full event"
        # Recovery: the space is freed, and the next collections say so.
        os.unlink(mnt / "blob")
        assert wait_for(lambda: check()["status"] == "ok"), check()


def test_exhausted_inodes_are_critical(serve, tmp_path):
    with tmpfs(tmp_path / "inodes", "size=4m,nr_inodes=32") as mnt:
        p = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
        made = 0
        try:
            while made < 1000:
                (mnt / f"f{made}").touch()
                made += 1
        except OSError:
            pass
        assert made < 1000  # the tmpfs ran out of inodes
        got = wait_for(lambda: (c := result(diagnose(p.url, "storage.inode_usage"), "storage.inode_usage"))
                       ["status"] == "critical" and c)
        assert got and got["status"] == "critical"


def test_readonly_remount_is_critical_and_clears_when_rw_again(serve, tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m") as mnt:
        p = serve("--interval", "1s", "--kmsg", str(own_kmsg(tmp_path)))
        check = lambda: result(diagnose(p.url, "storage.readonly"), "storage.readonly")  # noqa: E731
        assert wait_for(lambda: check()["status"] == "ok")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        got = wait_for(lambda: (c := check())["status"] == "critical" and c)
        assert got and str(mnt) in got["message"] + str(got["evidence"]), (got, check())
        # Re-read the mount table: no latching on what was seen before.
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
        assert wait_for(lambda: check()["status"] == "ok"), check()


def _events(url):
    import json

    from tests.conftest import http

    return json.loads(http("GET", url + "/api/v1/events")[2])["events"]
