"""Collectors: one module per source, each reading its paths from a `Roots` value."""
