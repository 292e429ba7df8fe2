"""sshd_config read the way sshd reads it, for the settings the access checks need.

sshd's rules (sshd_config(5), servconf.c): keywords are case-insensitive; `Keyword value`
or `Keyword=value`; for most keywords the first value obtained wins, while Port,
ListenAddress and HostKey accumulate; `Include` takes globs, relative to /etc/ssh, and
is processed where it stands (so Ubuntu's `Include /etc/ssh/sshd_config.d/*.conf` at the
top lets the drop-ins win). `Match` blocks hold per-connection overrides: their contents
are skipped, and a Match opened in an included file ends with that file.
"""

from __future__ import annotations

import glob
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from collectors.base import read_text
from collectors.facts.paths import host_path, system_path
from collectors.roots import Roots

# sshd gives up on deeper Include nesting (READCONF_MAX_DEPTH); so do we, which also stops loops.
MAX_DEPTH = 16
_ACCUMULATE = ("port", "listenaddress", "hostkey")
DEFAULT_PERMIT_ROOT_LOGIN = "prohibit-password"  # OpenSSH >= 7.0
DEFAULT_HOST_KEYS = ("/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key")


@dataclass
class SshdConfig:
    files: list[str] = field(default_factory=list)  # system paths, in the order read
    settings: dict[str, object] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _split(line: str) -> tuple[str, list[str]] | None:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    # The keyword ends at the first blank or '='; "Port=22" and "Port = 22" are both valid.
    end = len(line)
    for i, ch in enumerate(line):
        if ch in " \t=":
            end = i
            break
    key, rest = line[:end].lower(), line[end:].strip(" \t")
    if rest.startswith("="):
        rest = rest[1:].strip()
    try:
        args = shlex.split(rest, comments=True)
    except ValueError:  # unbalanced quote: sshd refuses the line too, keep the raw words
        args = rest.split()
    return key, args


def parse(roots: Roots, main: str = "/etc/ssh/sshd_config") -> SshdConfig:
    """Read `main` and what it includes under `roots`; raises when `main` itself is unreadable."""
    cfg = SshdConfig()
    _read_file(main, roots, cfg, depth=0)
    s = cfg.settings
    for key in _ACCUMULATE:
        s.setdefault(key, [])
    if not s["port"]:
        s["port"] = [22]
    s.setdefault("permitrootlogin", DEFAULT_PERMIT_ROOT_LOGIN)
    return cfg


def _read_file(path: str, roots: Roots, cfg: SshdConfig, depth: int) -> None:
    try:
        text = read_text(host_path(roots, path))
    except OSError as e:
        if depth == 0:
            raise
        cfg.errors.append(f"{path}: {e.strerror or e}")
        return
    cfg.files.append(path)
    in_match = False
    for line in text.splitlines():
        parsed = _split(line)
        if parsed is None:
            continue
        key, args = parsed
        if key == "match":
            in_match = True
            continue
        if in_match or not args:
            continue
        if key == "include":
            if depth + 1 >= MAX_DEPTH:
                cfg.errors.append(f"{path}: Include nested deeper than {MAX_DEPTH}")
                continue
            for pattern in args:
                for inc in _expand(pattern, roots):
                    _read_file(inc, roots, cfg, depth + 1)
            continue
        _set(cfg, key, args[0])


def _expand(pattern: str, roots: Roots) -> list[str]:
    """System paths matching an Include pattern, sorted as glob(3) sorts them."""
    if not pattern.startswith("/"):
        pattern = "/etc/ssh/" + pattern
    host = str(host_path(roots, pattern))
    if not glob.has_magic(pattern):
        return [pattern] if Path(host).exists() else []
    return sorted(system_path(roots, m) for m in glob.glob(host))


def _set(cfg: SshdConfig, key: str, value: str) -> None:
    s = cfg.settings
    if key == "port":
        try:
            s.setdefault("port", []).append(int(value))  # type: ignore[union-attr]
        except ValueError:
            cfg.errors.append(f"bad Port {value!r}")
    elif key in _ACCUMULATE:
        s.setdefault(key, []).append(value)  # type: ignore[union-attr]
    elif key not in s:
        # Yes/no style values are case-insensitive in sshd; paths and user names are not,
        # so only PermitRootLogin (the one the checks compare) is normalised.
        s[key] = value.lower() if key == "permitrootlogin" else value


def config_ports(settings: dict[str, object]) -> list[int]:
    """The ports sshd would bind: Port values, plus any `ListenAddress host:port` port.

    A ListenAddress without its own port takes every Port; one with a port takes only it.
    """
    ports: set[int] = set()
    addrs = settings.get("listenaddress") or []
    bare = not addrs
    for a in addrs:  # type: ignore[union-attr]
        port = _listen_port(str(a))
        if port is None:
            bare = True
        else:
            ports.add(port)
    if bare:
        ports.update(settings.get("port") or [22])  # type: ignore[arg-type]
    return sorted(ports)


def _listen_port(addr: str) -> int | None:
    # Forms: host, host:port, [v6]:port, v6 (several colons, no port), and an optional " rdomain x".
    addr = addr.split()[0] if addr.split() else addr
    if addr.startswith("["):
        _, _, rest = addr.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif addr.count(":") == 1:
        port = addr.partition(":")[2]
    else:
        return None
    return int(port) if port.isdigit() else None
