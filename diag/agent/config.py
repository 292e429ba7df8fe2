"""The agent's settings through the one loader (diag/settings): a file, the environment,
then flags, last wins.

The model is imported when settings are loaded, not with this module, so importing the
agent stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from diag.settings.locator import ConfigError

if TYPE_CHECKING:
    from diag.settings.agent import AgentConfig

AgentConfigError = ConfigError

# The settings `diag agent` takes as flags (diag/settings/flags.py makes them), and the
# roots that serve and collect take too.
AGENT_FLAGS = ("server", "token", "activation_id", "activation_code", "instance_id", "interval", "data_dir",
               "listen")
ROOT_FLAGS = ("proc", "sys", "kmsg", "root")
ENV = {"DIAG_SERVER": "server", "DIAG_TOKEN": "token", "DIAG_INSTANCE_ID": "instance_id",
       "DIAG_AGENT_DATA_DIR": "data_dir", "DIAG_INTERVAL": "interval"}


def load(path: str | None, env: Mapping[str, str] | None = None, **flags: Any) -> AgentConfig:
    from diag.settings.agent import AgentConfig
    from diag.settings.loader import load_model

    try:
        cfg = load_model(AgentConfig, path or None, os.environ if env is None else env, ENV, flags,
                         file_over_env=True)
    except ConfigError as e:
        field = (e.field or "").removeprefix("paths.")
        if e.message == "unknown setting" and "." not in field:
            # A misspelt key of the agent's own is named in the message, as the agent always did.
            raise ConfigError(f"unknown setting {field!r}", e.path, e.line) from None
        raise
    if not cfg.server:
        raise ConfigError("the server's URL is required (--server http://host:8080)", field="server")
    return cfg
