"""Application groups: CPU and memory summed by executable or by the config's app_groups,
from the processes collector's one walk of /proc (fixture trees, exact) and this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.apps import AppGroupError, AppGroups, parse_app_groups
from collectors.processes import PF_KTHREAD, ProcessesCollector
from collectors.roots import Roots
from collectors.settings import CollectorSettings
from diag import catalogue
from diag.agent.config import AgentConfigError, load as load_agent
from diag.config import ConfigError, load
from diag.model import Batch
from tests.conftest import HOST_T0, HOST_T1

PAGE = os.sysconf("SC_PAGE_SIZE")
HZ = os.sysconf("SC_CLK_TCK")


def apps(b: Batch) -> dict[str, dict[str, float]]:
    """{app: {metric: value}} of a batch's app_* samples."""
    out: dict[str, dict[str, float]] = {}
    for s in b.samples:
        if s.metric.startswith("app_"):
            assert set(s.labels) == {"app"} and s.ts == b.ts
            out.setdefault(s.labels["app"], {})[s.metric] = s.value
    return out


def pct(ticks: int, seconds: float, cpus: int) -> float:
    return ticks * (100.0 / HZ / seconds / cpus)


def fixture_cycle(**settings) -> tuple[Batch, Batch]:
    c = ProcessesCollector(HOST_T0, CollectorSettings(**settings))
    first = c.collect(1000.0)
    c.roots = HOST_T1
    return first, c.collect(1010.0)


def test_every_app_metric_is_in_the_catalogue_with_its_label():
    for name in ("app_cpu_usage", "app_memory_rss", "app_processes"):
        assert catalogue.get(name).labels == ("app",)
    assert catalogue.get("app_cpu_usage").unit == "percent" and catalogue.get("app_memory_rss").unit == "bytes"


def test_fixture_groups_by_executable_with_exact_sums_and_rates():
    first, second = fixture_cycle()
    # No interval at the first cycle: memory and counts, no CPU.
    assert apps(first) == {
        "python3": {"app_memory_rss": 25600 * PAGE, "app_processes": 1},
        "postgres": {"app_memory_rss": 51200 * PAGE, "app_processes": 1},
        "a) b (c)": {"app_memory_rss": 256 * PAGE, "app_processes": 1},
        "sleep": {"app_memory_rss": 200 * PAGE, "app_processes": 1},
        "idle-daemon": {"app_memory_rss": 512 * PAGE, "app_processes": 1},
        "oldjob": {"app_memory_rss": 4096 * PAGE, "app_processes": 1},
    }
    # Tick deltas over 10 s on the fixture's 2 CPUs (its /proc/stat lists cpu0 and cpu1):
    # python3 +500, postgres +150, make new with 50, newjob (pid 707 reused) 40, 303 +20.
    got = apps(second)
    assert got == {
        "python3": {"app_cpu_usage": pct(500, 10, 2), "app_memory_rss": 25600 * PAGE, "app_processes": 1},
        "postgres": {"app_cpu_usage": pct(150, 10, 2), "app_memory_rss": 51200 * PAGE, "app_processes": 1},
        "make": {"app_cpu_usage": pct(50, 10, 2), "app_memory_rss": 1024 * PAGE, "app_processes": 1},
        "newjob": {"app_cpu_usage": pct(40, 10, 2), "app_memory_rss": 128 * PAGE, "app_processes": 1},
        "a) b (c)": {"app_cpu_usage": pct(20, 10, 2), "app_memory_rss": 256 * PAGE, "app_processes": 1},
        "idle-daemon": {"app_cpu_usage": 0.0, "app_memory_rss": 512 * PAGE, "app_processes": 1},
    }
    if HZ == 100:
        assert got["python3"]["app_cpu_usage"] == 25.0  # half of one core of two


def test_user_groups_with_globs_take_precedence_over_the_executable():
    _, b = fixture_cycle(app_groups={"db": ("postgres", "mysqld"), "batch": ("*job", "make"),
                                     "odd": ("a) b ?c)",)})
    got = apps(b)
    assert set(got) == {"db", "batch", "odd", "python3", "idle-daemon"}
    assert got["batch"] == {"app_cpu_usage": pct(50 + 40, 10, 2), "app_memory_rss": (1024 + 128) * PAGE,
                            "app_processes": 2}
    assert got["db"]["app_memory_rss"] == 51200 * PAGE and got["odd"]["app_processes"] == 1


def test_the_first_group_in_config_order_wins():
    g = AppGroups({"web": ("nginx", "php-fpm*"), "php": ("php*",)})
    assert g.of("php-fpm8.2") == "web" and g.of("php") == "php" and g.of("nginx") == "web"
    assert g.of("Nginx") == "Nginx"  # names are case-sensitive, as the kernel keeps them
    assert g.of("kworker/0:1-events", kernel_thread=True) == "kernel"
    assert AppGroups({"kw": ("kworker/*",)}).of("kworker/0:1-events", kernel_thread=True) == "kw"


def _line(pid: int, name: str, ticks: int, rss: int, flags: int = 4194304, start: int = 1200) -> str:
    """A /proc/<pid>/stat line in the kernel's layout, utime = ticks."""
    return (f"{pid} ({name}) S 1 {pid} {pid} 0 -1 {flags} 98 0 0 0 {ticks} 0 0 0 20 0 1 0 {start} 3133440 {rss} "
            "18446744073709551615 1 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 1 1 1 1 1 1 1 0\n")


def _tree(top: Path, procs: dict[int, tuple], cpus: int = 4) -> Roots:
    """A /proc of `procs` {pid: (name, ticks, rss[, flags])} and `cpus` CPUs."""
    (top / "proc").mkdir(parents=True, exist_ok=True)
    (top / "proc" / "stat").write_text("cpu  1 0 1 1 0 0 0 0 0 0\n" +
                                       "".join(f"cpu{i} 1 0 1 1 0 0 0 0 0 0\n" for i in range(cpus)) + "intr 0\n")
    for pid, (name, ticks, rss, *flags) in procs.items():
        (top / "proc" / str(pid)).mkdir(exist_ok=True)
        (top / "proc" / str(pid) / "stat").write_text(_line(pid, name, ticks, rss, *flags))
    return Roots.under(top)


def test_many_groups_are_bounded_to_the_top_n_by_cpu_and_by_memory_plus_other(tmp_path: Path):
    # 40 executables: e00..e39, each two processes. CPU grows with the index, memory falls
    # with it, so the top 3 by CPU (e37-e39) and by memory (e00-e02) are different groups.
    t0 = {1000 + i: (f"e{i // 2:02d}", 100, 0) for i in range(80)}
    t1 = {1000 + i: (f"e{i // 2:02d}", 100 + i // 2, 1000 - i // 2) for i in range(80)}
    t1[2000] = ("kworker/0:1-events", 7, 0, 4194304 | PF_KTHREAD)  # started in the interval
    t1[2001] = ("kworker/1:2-mm", 3, 0, PF_KTHREAD)
    c = ProcessesCollector(_tree(tmp_path / "a", t0), CollectorSettings(top_apps=3))
    c.collect(1000.0)
    c.roots = _tree(tmp_path / "b", t1)
    got = apps(c.collect(1005.0))
    kept = ["e00", "e01", "e02", "e37", "e38", "e39"]
    assert sorted(got) == sorted(kept + ["other"])
    for k in kept:
        g = int(k[1:])
        assert got[k] == {"app_cpu_usage": pct(2 * g, 5, 4), "app_memory_rss": 2 * (1000 - g) * PAGE,
                          "app_processes": 2}
    rest = range(3, 37)
    assert got["other"] == {"app_cpu_usage": pct(sum(2 * g for g in rest) + 7 + 3, 5, 4),
                            "app_memory_rss": sum(2 * (1000 - g) for g in rest) * PAGE,
                            "app_processes": 2 * len(rest) + 2}
    # Nothing is lost in the folding: the groups add up to every process.
    assert sum(v["app_processes"] for v in got.values()) == 82
    assert sum(v["app_cpu_usage"] for v in got.values()) == pytest.approx(pct(sum(range(40)) * 2 + 10, 5, 4))


def test_kernel_threads_are_one_group(tmp_path: Path):
    procs = {2: ("kthreadd", 5, 0, PF_KTHREAD), 30: ("kworker/0:1-events", 9, 0, PF_KTHREAD),
             31: ("ksoftirqd/0", 1, 0, PF_KTHREAD), 400: ("bash", 3, 800)}
    b = ProcessesCollector(_tree(tmp_path, procs), CollectorSettings()).collect(1000.0)
    assert apps(b) == {"kernel": {"app_memory_rss": 0.0, "app_processes": 3},
                       "bash": {"app_memory_rss": 800 * PAGE, "app_processes": 1}}


def test_a_cut_name_is_grouped_by_argv0_and_an_exec_moves_the_process(tmp_path: Path):
    roots = _tree(tmp_path, {101: ("systemd-journal", 10, 300), 102: ("bash", 10, 100)})
    (roots.proc / "101" / "cmdline").write_bytes(b"/usr/lib/systemd/systemd-journald\0")
    c = ProcessesCollector(roots, CollectorSettings(app_groups={"shells": ("bash", "zsh")}))
    assert set(apps(c.collect(1000.0))) == {"systemd-journald", "shells"}
    # pid 102 execs make: same pid and start time, a new comm and new ticks.
    (roots.proc / "102" / "stat").write_text(_line(102, "make", 30, 500))
    got = apps(c.collect(1010.0))
    assert set(got) == {"systemd-journald", "make"}
    assert got["make"] == {"app_cpu_usage": pct(20, 10, 4), "app_memory_rss": 500 * PAGE, "app_processes": 1}


def test_live_machine_groups_this_test_process_with_its_python_children():
    burn = "import time\nend = time.monotonic() + 0.4\nwhile time.monotonic() < end: pass\ntime.sleep(30)\n"
    name = Path("/proc/self/comm").read_text().rstrip("\n")
    c = ProcessesCollector(Roots(), CollectorSettings(top_apps=50, app_groups={"mytest": (name,)}))
    children = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        c.collect(time.time())
        time.sleep(0.6)
        b = c.collect(time.time())
    finally:
        for p in children:
            p.kill()
            p.wait()
        c.close()
    got = apps(b)["mytest"]
    # Its children run the same interpreter, so they share its comm, and its group.
    assert got["app_processes"] >= 3
    mine = int(Path("/proc/self/statm").read_text().split()[1]) * PAGE
    assert got["app_memory_rss"] > mine
    # Two children each burnt about 0.4 s of one core in the 0.6 s between the cycles.
    assert got["app_cpu_usage"] * (os.cpu_count() or 1) > 60
    assert 0 < got["app_cpu_usage"] <= 100


def test_config_refuses_bad_groups_with_file_line_and_field(tmp_path: Path):
    good = tmp_path / "ok.yaml"
    good.write_text('app_groups:\n  web: [nginx, "php-fpm*"]\n  db: [postgres, mysqld]\ntop_apps: 4\n')
    cfg = load(good)
    s = cfg.collector_settings()
    assert s.app_groups == {"web": ("nginx", "php-fpm*"), "db": ("postgres", "mysqld")} and s.top_apps == 4
    assert load().collector_settings().top_apps == 10
    for text, line, field in (
        ('app_groups:\n  web:\n    - nginx\n    - ""\n', 4, "app_groups.web.1"),
        ("app_groups:\n  web: [nginx]\n  other: [x]\n", 3, "app_groups.other"),
        ("app_groups:\n  web: []\n", 2, "app_groups.web"),
        ("app_groups:\n  web: nginx\n", 2, "app_groups.web"),
        ("top_apps: 0\n", 1, "top_apps"),
    ):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as e:
            load(bad)
        assert (e.value.path, e.value.line, e.value.field) == (str(bad), line, field), text


def test_agent_refuses_what_the_server_refuses(tmp_path: Path):
    ok = tmp_path / "a.yaml"
    ok.write_text("server: http://x:8080\napp_groups:\n  web: [nginx]\ntop_apps: 3\n")
    s = load_agent(str(ok), env={}).collector_settings()
    assert s.app_groups == {"web": ("nginx",)} and s.top_apps == 3
    bad = tmp_path / "b.yaml"
    bad.write_text('server: http://x:8080\napp_groups:\n  web:\n    - nginx\n    - ""\n')
    with pytest.raises(AgentConfigError, match=r"b\.yaml:5: app_groups\.web\.1: a process name or glob"):
        load_agent(str(bad), env={})
    with pytest.raises(AppGroupError):
        parse_app_groups({"other": ["x"]})


def test_sums_kept_from_changes_equal_a_full_recount_through_churn(tmp_path: Path):
    # The collector updates group sums from the processes that changed; over cycles of
    # starts, exits, execs, RSS changes, reused pids and a broken stat line, they must
    # equal a count over the whole tree.
    import random

    rnd = random.Random(21)
    names = ["nginx", "postgres", "bash", "make", "cc1"]
    procs = {pid: (rnd.choice(names), 0, rnd.randint(1, 500), 4194304, 1000 + pid) for pid in range(100, 160)}
    c = ProcessesCollector(Roots.under(tmp_path), CollectorSettings(top_apps=50))
    for cycle in range(25):
        root = tmp_path / f"c{cycle}"
        _tree(root, procs)
        broken = rnd.choice(sorted(procs))
        (root / "proc" / str(broken) / "stat").write_text(f"{broken} (x) S 1\n")
        c.roots = Roots.under(root)
        got = apps(c.collect(1000.0 + 10 * cycle))
        want: dict[str, list[int]] = {}
        for pid, (name, _, rss, _, _) in procs.items():
            if pid != broken:
                want.setdefault(name, [0, 0])
                want[name][0] += rss * PAGE
                want[name][1] += 1
        assert {a: [v["app_memory_rss"], v["app_processes"]] for a, v in got.items()} == want, cycle
        for pid in rnd.sample(sorted(procs), 15):
            name, ticks, rss, flags, start = procs[pid]
            change = rnd.choice(("exit", "exec", "rss", "run", "reuse"))
            if change == "exit":
                del procs[pid]
            elif change == "exec":
                procs[pid] = (rnd.choice(names), ticks + 1, rss, flags, start)
            elif change == "rss":
                procs[pid] = (name, ticks, rnd.randint(1, 500), flags, start)
            elif change == "run":
                procs[pid] = (name, ticks + 5, rss, flags, start)
            else:
                procs[pid] = (rnd.choice(names), 0, rnd.randint(1, 500), flags, start + 7)
        for _ in range(5):
            pid = rnd.randint(100, 200)
            procs.setdefault(pid, (rnd.choice(names), 3, rnd.randint(1, 500), 4194304, 5000 + cycle))
