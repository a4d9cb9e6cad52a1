"""Benchmarks: `python -m benchmarks [NAME ...]` (or `make bench`) prints the figures the issues ask for."""
