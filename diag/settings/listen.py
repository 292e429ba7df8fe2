"""The checks made before the service listens: loopback unless a token guards it."""

from __future__ import annotations

import functools
import ipaddress
import socket

from diag.settings.locator import ConfigError
from diag.settings.model import Config


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback one. A name is resolved, not
    read: `127.anywhere` may well be 0.0.0.0. A name that does not resolve is not loopback."""
    return _loopback(host.strip())


@functools.lru_cache(maxsize=64)
def _loopback(host: str) -> bool:
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not name:
        return False  # "" binds every interface
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    try:
        return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)
    except ValueError:
        return False


def reads_protected(config: Config) -> bool:
    """protect_reads as set, else on whenever the service answers beyond this machine."""
    if config.protect_reads is not None:
        return config.protect_reads
    return bool(config.token) and not is_loopback(config.host)


def check_listen(config: Config) -> None:
    """The service answers only this machine unless an admin token protects it."""
    if not config.token and not is_loopback(config.host):
        raise ConfigError(
            f"refusing to listen on {config.host} without a token: it is not (or does not resolve only to) a "
            "loopback address; set DIAG_TOKEN (or token in the config) or listen on 127.0.0.1", field="host")
    if config.protect_reads and not config.token:
        raise ConfigError("protect_reads needs an admin token (DIAG_TOKEN) to read with", field="protect_reads")


def check_commands(config: Config) -> None:
    """Remote commands run code as root: never without the admin token to guard them."""
    if config.enable_commands and not config.token:
        raise ConfigError("refusing to enable remote commands without an admin token: set DIAG_TOKEN "
                          "(or token in the config)", field="enable_commands")
