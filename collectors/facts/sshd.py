"""Is sshd installed, running, listening, and are the files it needs at start present?

Running means a process named `sshd` whose parent is not itself an sshd: OpenSSH gives
per-connection children the same name ("sshd: root@pts/0"), and only the listener
matters. A host that starts sshd through systemd socket activation (Ubuntu >= 22.10
`ssh.socket`) has no sshd until someone connects; `socket_activated` then says that
systemd holds the port, so "not running" is not read as "unreachable".
"""

from __future__ import annotations

from collectors.facts import sshd_config
from collectors.facts.paths import host_path
from collectors.facts.processes import Proc, named, ppid
from collectors.roots import Roots

CONFIG = "/etc/ssh/sshd_config"
BINARIES = ("/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd", "/usr/local/sbin/sshd", "/usr/local/bin/sshd")
# Debian/Ubuntu chroot to /run/sshd (made by the service unit at start); RHEL, SUSE and
# Alpine to /var/empty/sshd or /var/empty. Which one a binary uses is compiled in.
PRIVSEP_DIRS = ("/run/sshd", "/var/empty/sshd", "/var/empty")


def sshd_facts(roots: Roots, procs: list[Proc], listening: list[dict]) -> dict:
    binary = next((b for b in BINARIES if host_path(roots, b).is_file()), None)
    config_exists = host_path(roots, CONFIG).is_file()
    out: dict = {
        "installed": binary is not None or config_exists,
        "binary": binary,
        "running": False,
        "pids": [],
        "ports": [],
        "socket_activated": False,
        "config_path": CONFIG,
        "config_exists": config_exists,
        "config_files": [],
        "settings": {"port": [22], "permitrootlogin": sshd_config.DEFAULT_PERMIT_ROOT_LOGIN,
                     "listenaddress": [], "hostkey": []},
        "host_keys": [],
        "privsep_dir": _privsep(roots, binary is not None or config_exists),
        # Problems inside the configuration (unreadable include, bad Port) go here, not in
        # "error": the rest of the part (running, ports, files) is still true.
        "config_error": None,
        "error": None,
    }
    errors: list[str] = []
    if config_exists:
        try:
            cfg = sshd_config.parse(roots, CONFIG)
        except OSError as e:  # present but unreadable (we are not root)
            errors.append(f"{CONFIG}: {e.strerror or e}")
        else:
            out["config_files"] = cfg.files
            out["settings"] = cfg.settings
            errors.extend(cfg.errors)
    keys = out["settings"]["hostkey"] or list(sshd_config.DEFAULT_HOST_KEYS)
    out["host_keys"] = [{"path": k, "exists": host_path(roots, k).is_file()} for k in keys]

    sshd = named(procs, ("sshd",))
    sshd_pids = {p.pid for p in sshd}
    daemons = [p.pid for p in sshd if ppid(roots.proc, p.pid) not in sshd_pids]
    out["running"] = bool(daemons)
    out["pids"] = daemons
    config_ports = sshd_config.config_ports(out["settings"])
    own = sorted({s["port"] for s in listening if s["proto"] == "tcp" and sshd_pids.intersection(s["pids"])})
    out["ports"] = own or (config_ports if out["installed"] else [])
    if not daemons:
        out["socket_activated"] = any(
            s["proto"] == "tcp" and s["port"] in config_ports and 1 in s["pids"] and s["process"] == "systemd"
            for s in listening
        )
    out["config_error"] = "; ".join(errors) or None
    return out


def _privsep(roots: Roots, installed: bool) -> dict:
    for d in PRIVSEP_DIRS:
        if host_path(roots, d).is_dir():
            return {"path": d, "exists": True}
    # Neither exists: name the one this distribution's sshd would want.
    rhel_like = host_path(roots, "/etc/redhat-release").exists()
    return {"path": "/var/empty/sshd" if rhel_like else "/run/sshd", "exists": False} if installed \
        else {"path": None, "exists": False}
