"""Shared test helpers: service fixtures, factories, process helpers."""
