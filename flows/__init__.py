"""Prefect flows: thin wiring of mll library functions (no logic lives here)."""
