"""The service's parts, as the app factory was given them: each route takes the part it serves."""

from __future__ import annotations

from flask import current_app

from diag.wiring import Parts


def parts() -> Parts:
    return current_app.extensions["diag"]["parts"]
