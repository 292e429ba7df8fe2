"""The check catalogue: every check in PRODUCT.md's table order, by id."""

from __future__ import annotations

from checks import access, containers, gpu, hardware, network, performance, state, storage
from checks.base import Check

ALL: tuple[Check, ...] = storage.CHECKS + performance.CHECKS + containers.CHECKS + state.CHECKS + network.CHECKS + access.CHECKS + hardware.CHECKS + gpu.CHECKS
BY_ID: dict[str, Check] = {c.id: c for c in ALL}

if len(BY_ID) != len(ALL):  # a duplicated id would silently hide a check
    raise RuntimeError("duplicate check id in the catalogue")


def get(check_id: str) -> Check:
    """The check with this id; KeyError names the unknown id."""
    try:
        return BY_ID[check_id]
    except KeyError:
        raise KeyError(f"unknown check {check_id!r}") from None
