"""The value types settings are written in: durations ("30s"), sizes ("1GiB"), bit rates."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from diag.units import parse_bitrate, parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
BitRate = Annotated[float, BeforeValidator(parse_bitrate), Field(gt=0)]


class Strict(BaseModel):
    """A section of settings: a key it does not know is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
