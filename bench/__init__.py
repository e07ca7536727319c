"""Benchmarks: bare Flask vs the usual Flask stack vs this project's pipeline (not tests)."""
