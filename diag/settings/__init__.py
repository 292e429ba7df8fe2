"""The one settings model of server and agent and what reads it.

model (the shared `Collection` and the server's `Config`), agent (`AgentConfig`),
sections and delivery (their nested sections), types (durations, sizes, bit rates),
defaults (plain values other parts need without the model), loader and locator (the one
loader and its `path:line: field:` errors), listen (checks before listening), flags
(command-line flags from the fields) and stale (the one freshness rule).

This file imports nothing: checks and pages read `diag.settings.stale`, the store
`diag.settings.defaults`, and neither needs pydantic.
"""
