"""Benchmarks and drills: every ``edge-aae bench`` command and ``make drills`` (workstation only)."""
