"""`diag agent`'s settings: the collection keys it shares with the server, plus its own.

An agent file written before the shared model keeps working: the paths may sit at the top
(`proc: /host/proc`) and the caps and scopes at the top (`bandwidth_caps:`), beside the
`paths:` and `network:` sections the server reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WrapValidator, field_validator, model_validator

from diag.settings.model import Collection
from diag.settings.sections import Cap, Network, Paths
from diag.settings.types import Duration

_PATH_KEYS = tuple(Paths.model_fields)
Scope = Literal["public", "private"]


def _at_the_key(value: Any, handler: Any) -> Any:
    # The top-level caps of an old agent file are refused at their key's line, as they always were.
    try:
        return handler(value)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p != "[key]")
        raise ValueError(f"{where}: {err['msg']}" if where else err["msg"]) from None


class AgentConfig(Collection):
    # Required: load() says so, naming the flag to give.
    server: str | None = Field(None, description="the server's URL, e.g. http://10.0.0.1:8080; required")
    token: str | None = Field(None, description="the ingest token or an agent token")
    activation_id: str | None = Field(None, description="register once with this activation...")
    activation_code: str | None = Field(None, description="...and its code; the agent token is then kept in "
                                                          "the data dir")
    hostname: str | None = None
    labels: dict[str, str] = {}
    data_dir: Path = Field(Path("./agent-data"), description="buffer, token and kernel-log position")
    listen: str | None = Field(None, description="also serve /metrics here, e.g. 0.0.0.0:9310")
    buffer_batches: int = Field(8640, ge=1)  # a day at 10 s
    max_backoff: Duration = 300
    # Where the boot id is read for remote commands' reboot schedules (None: <proc>/sys/kernel/
    # random/boot_id). A file the operator controls lets a container or a test agent report
    # a boot of its own.
    boot_id_file: Path | None = None
    bandwidth_caps: Annotated[dict[Scope, Cap], WrapValidator(_at_the_key)] = Field({}, exclude=True)
    interface_scopes: dict[str, Scope] = Field({}, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _top_level_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in _PATH_KEYS):
            data = dict(data)
            paths = data.get("paths")
            paths = dict(paths) if isinstance(paths, dict) else {}
            for key in _PATH_KEYS:
                if key in data:
                    paths[key] = data.pop(key)
            data["paths"] = paths
        return data

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise ValueError("must be a mapping of strings")
        return v

    @model_validator(mode="after")
    def _top_level_network(self) -> AgentConfig:
        if self.bandwidth_caps or self.interface_scopes:
            self.network = Network(bandwidth_caps={**self.network.bandwidth_caps, **self.bandwidth_caps},
                                   interface_scopes={**self.network.interface_scopes, **self.interface_scopes})
        return self
