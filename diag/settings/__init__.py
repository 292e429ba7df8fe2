"""The one settings model of server and agent (model, sections, agent), its one loader
and error locator (loader, locator), the checks made before listening (listen), the
command-line flags drawn from the model (flags) and the freshness rule (stale).

This file imports nothing: `diag.settings.stale` is read by checks and pages, and the
agent's path must not pay for what it does not use.
"""
