"""Benchmarks: speed and memory goals, measured as numbers (JSON), never asserted in tests."""
