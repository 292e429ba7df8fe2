"""The service's settings, by the names the rest of the code imports: the model, its
loader and the start-up checks live in diag/settings/."""

from __future__ import annotations

from diag.identity import instance_id_from
from diag.settings.listen import check_commands, check_listen, is_loopback, reads_protected
from diag.settings.loader import load
from diag.settings.locator import ConfigError
from diag.settings.model import Config

__all__ = ["Config", "ConfigError", "check_commands", "check_listen", "instance_id_from", "is_loopback", "load",
           "reads_protected"]
